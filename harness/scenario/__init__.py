"""Scenarios: the TOML file format, its typed schema, loading and validation, and the
`run`, `validate` and `list` commands.

Import from the modules (harness.scenario.schema, ...); this file imports nothing.
"""
