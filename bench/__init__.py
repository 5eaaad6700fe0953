"""Benchmarks of the event store, the command path and the relay, each beside its baselines."""
