"""Minimal numeric core: tokenizer, data, model, optimizer, one training step.

Knows nothing of scenarios or pytest; `harness` wires it together.
"""
