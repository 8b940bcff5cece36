"""Benchmarks: `python -m bench [NAME ...]` prints a table per benchmark and can write JSON."""
