"""Benchmarks and tools that are not part of the apps (issue 11)."""
