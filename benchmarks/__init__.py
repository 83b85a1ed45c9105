"""Benchmark scripts (`make bench*`, each run as `python benchmarks/<script>.py`, which puts this
folder first on sys.path: they import `pipeline_bench`'s helpers as a sibling). The tests import
`benchmarks.pipeline_bench`, the one script that imports no sibling."""
