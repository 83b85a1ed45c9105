"""Benchmark scripts (`make bench*`, each run as `python benchmarks/<script>.py`, which puts this
folder first on sys.path). What they share is in `common.py` (imported as `common` when a script
runs, as `benchmarks.common` when the tests import `benchmarks.<script>`); no script imports
another. Each writes its tables to `results/<name>.json` through `common.write_result`."""
