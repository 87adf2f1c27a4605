"""Fuzz harnesses over the pure core (see fuzz/README.rst)."""
