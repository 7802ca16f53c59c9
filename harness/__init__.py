"""Harness: wires the numeric core into scenarios, recordings, checks and a CLI."""
