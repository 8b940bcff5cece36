"""Benchmarks: `python -m bench` runs them all, `python -m bench NAME [options]` one; each prints
a table and can write it as JSON (`--json PATH`)."""
