"""Training data: the default data bundle (built offline from installed packages), a
researcher's own tokenizer and corpus prepared for a run, and the `data` command.

Import from the modules (harness.data.prepare, ...); this file imports nothing.
"""
