"""Benchmarks: each module measures one thing against a baseline run in the same process."""
