"""Reports: dead-token dynamics analysed from a trajectory file, their figures, report.json,
report.md and the `report` command.

Import from the modules (harness.report.analysis, ...); this file imports nothing.
"""
