"""Benchmark scripts (`make bench*`); the tests import their helpers as `benchmarks.<script>`."""
