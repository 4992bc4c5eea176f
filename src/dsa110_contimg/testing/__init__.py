"""Synthetic data builders shared by tests, documentation examples and benchmarks."""
