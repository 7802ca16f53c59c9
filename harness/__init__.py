"""Harness: wires the numeric core into scenarios, recordings, checks and a CLI."""

# One log line's format, on the console (harness.cli) and in a run's log file (harness.run_folder)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
