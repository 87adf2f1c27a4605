"""Benchmarks of aibridge against the raw upstream and LiteLLM: ``python -m benchmarks.run``."""
