"""Sweeps: many seeded runs of one scenario as one experiment. The sweep file, where its runs
execute, the index of their progress, the cross-run expectations, the summary and the
`sweep` command.

Import from the modules (harness.sweep.run, ...); this file imports nothing, so that
`python -m harness --help`, which imports harness.sweep.cli, does not load the sweep machinery.
"""
