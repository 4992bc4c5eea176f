"""Benchmarks of dsa110-contimg at full DSA-110 size.

``python -m benchmarks [--quick]`` runs the whole suite (`benchmarks.suite`);
the ``bench_*.py`` scripts are the deeper per-topic benchmarks.
"""
