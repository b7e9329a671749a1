"""Rigs only tests and benchmarks use: HIL fleets, fault proxies, scratch databases, signing."""
