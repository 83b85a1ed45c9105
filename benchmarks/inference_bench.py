"""In-process inference benchmark: the served model's ``Predictor.predict`` for 1, 8 and 64 texts,
through the compiled path and through scikit-learn, interleaved.

    python benchmarks/inference_bench.py [--runs 7] [--seconds 0.5] [--previous-rev HEAD]

Loads this project's verified model (models/final; run `dvc repro` first) with the numeric
kernels pinned as the service pins them, checks that the compiled path gives scikit-learn's
labels and probabilities bit for bit on every text of the pool, then times ``predict`` per batch
size on batches of real test tweets (raw, so cleaning is included): in each of ``--runs`` runs
the variants take turns in 20 ms slices until each has run ``--seconds``, and the medians over
the runs are reported, with the cleaning alone for reference. ``--previous-rev`` also times the
compiled path of ``src/sentiment_pipeline/inference/compiled.py`` at that git revision (read
with ``git show``) on the same model. The load average is recorded beside the numbers: on a
shared machine they are noisy, and the interleaving keeps them comparable with each other.
Markdown to stdout; with --results-dir, the tables to <results-dir>/inference.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path

from sentiment_pipeline.core import kernels

kernels.pin(restart=True)  # the numbers the service computes with (see kernels.py)

import numpy as np  # noqa: E402

from sentiment_pipeline.core import paths  # noqa: E402
from sentiment_pipeline.inference.predictor import Predictor  # noqa: E402

if __package__:  # imported as benchmarks.inference_bench
    from . import common
else:  # run as python benchmarks/inference_bench.py: this folder is first on sys.path
    import common

ROOT = common.ROOT
SIZES = (1, 8, 64)
POOL = 512  # test tweets the batches are drawn from, in turn
COMPILED_MODULE = "src/sentiment_pipeline/inference/compiled.py"


def pool_texts(root: Path = ROOT, n: int = POOL) -> list[str]:
    """Raw tweets of the test split (what a client sends), in file order."""
    import pandas as pd

    frame = pd.read_csv(root / paths.TEST_FILE, keep_default_na=False)
    column = "raw" if "raw" in frame.columns else "text"
    return frame[column].astype(str).tolist()[:n]


def previous_compiled(rev: str, root: Path = ROOT) -> types.ModuleType:
    """compiled.py as it was at git revision ``rev``, loaded as a module of its own."""
    source = subprocess.run(["git", "show", f"{rev}:{COMPILED_MODULE}"], cwd=root, capture_output=True,
                            text=True, check=True).stdout
    module = types.ModuleType(f"compiled_at_{rev}")
    sys.modules[module.__name__] = module  # its dataclasses look their module up there
    exec(compile(source, f"{rev}:{COMPILED_MODULE}", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def identical(a: Predictor, b: Predictor, texts: Sequence[str], size: int) -> bool:
    """Whether two predictors give the same labels and probabilities, bit for bit, on ``texts``
    in batches of ``size``."""
    for start in range(0, len(texts), size):
        x, y = a.predict(texts[start:start + size]), b.predict(texts[start:start + size])
        if not (np.array_equal(x.label_index, y.label_index) and np.array_equal(x.probabilities, y.probabilities)):
            return False
    return True


def batches(texts: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive batches of ``size`` texts, wrapping around the pool."""
    n = max(1, len(texts) // size)
    return [[texts[(i * size + j) % len(texts)] for j in range(size)] for i in range(n)]


def measure(variants: dict[str, Callable[[list[str]], object]], texts: Sequence[str], sizes: Sequence[int] = SIZES,
            runs: int = 7, seconds: float = 0.5, slice_seconds: float = 0.02) -> dict[int, dict[str, list[float]]]:
    """Seconds per call of each variant per batch size, one value per run. Within a run the
    variants take turns in slices of about ``slice_seconds`` until each has run for ``seconds``,
    so a burst of load from elsewhere slows all of them alike."""
    names = list(variants)
    timings: dict[int, dict[str, list[float]]] = {size: {name: [] for name in names} for size in sizes}
    for size in sizes:
        work = batches(texts, size)
        for name in names:  # warm-up: caches, lazy imports, first-call allocations
            for batch in work[:20]:
                variants[name](batch)
        for run in range(runs):
            spent, calls = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
            while min(spent.values()) < seconds:
                for name in names[run % len(names):] + names[:run % len(names)]:
                    call, started = variants[name], time.perf_counter()
                    while True:
                        call(work[calls[name] % len(work)])
                        calls[name] += 1
                        elapsed = time.perf_counter() - started
                        if elapsed >= slice_seconds:
                            break
                    spent[name] += elapsed
            for name in names:
                timings[size][name].append(spent[name] / calls[name])
    return timings


def report_tables(timings: dict[int, dict[str, list[float]]], runs: int, note: str) -> list[dict]:
    """The result table (``common.table``): median ms per call of each variant per batch size,
    the compiled path's speed-up and its texts/s."""
    names = [name for name in next(iter(timings.values())) if name != "cleaning alone"]
    previous = "previous compiled" in names
    columns = ["texts per call", *[f"{name} ms" for name in names], "cleaning alone ms",
               "compiled vs scikit-learn", *(["compiled vs previous"] if previous else []), "compiled texts/s"]
    rows = []
    for size, by_name in timings.items():
        ms = {name: statistics.median(values) * 1000 for name, values in by_name.items()}
        rows.append([size, *[round(ms[name], 3) for name in names], round(ms["cleaning alone"], 3),
                     f"{ms['scikit-learn'] / ms['compiled']:.1f}x",
                     *([f"{ms['previous compiled'] / ms['compiled']:.1f}x"] if previous else []),
                     round(size / ms["compiled"] * 1000)])
    return [common.table("Predictor.predict of the served model, in process", columns, rows,
                         note=f"Median of {runs} interleaved runs; {note}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5, help="Time per variant per run.")
    parser.add_argument("--previous-rev", default=None,
                        help="Also time compiled.py of this git revision (e.g. HEAD) on the same model.")
    parser.add_argument("--results-dir", type=Path, default=None, help=common.RESULTS_DIR_HELP)
    args = parser.parse_args()
    if args.results_dir is not None and "inference" not in common.MAKE_TARGETS:
        parser.error("benchmarks/common.py registers no 'inference' benchmark (MAKE_TARGETS) to write a result "
                     "file for; run without --results-dir")
    script_args = common.script_args()
    measured_at, params_md5 = common.utc_now(), common.params_md5(ROOT / paths.PARAMS)
    load_before = os.getloadavg()

    compiled = Predictor.load(ROOT)
    if compiled.compiled is None:
        raise SystemExit("the served model has no compiled path (or it differs from scikit-learn): nothing to compare")
    sklearn = Predictor(compiled.model, compiled.normalizer, compiled.classes, compiled.metadata, compiled=False)
    predictors = {"scikit-learn": sklearn}
    if args.previous_rev:
        previous = Predictor(compiled.model, compiled.normalizer, compiled.classes, compiled.metadata, compiled=False)
        previous.compiled = previous_compiled(args.previous_rev).compile_model(compiled.model)
        predictors["previous compiled"] = previous
    predictors["compiled"] = compiled
    texts = pool_texts()
    for name, predictor in predictors.items():
        for size in SIZES:
            if name != "scikit-learn" and not identical(predictor, sklearn, texts, size):
                raise SystemExit(f"{name} differs from scikit-learn on the pool in batches of {size}")

    variants: dict[str, Callable[[list[str]], object]] = {name: p.predict for name, p in predictors.items()}
    variants["cleaning alone"] = compiled.clean
    timings = measure(variants, texts, SIZES, args.runs, args.seconds)
    load_after = os.getloadavg()
    note = (f"{len(texts)} raw test tweets, batches drawn in turn, cleaning included; labels and probabilities "
            f"bit-identical to scikit-learn's on all of them; load average {load_before[0]:.2f} before, "
            f"{load_after[0]:.2f} after ({os.cpu_count()} cores).")
    tables = report_tables(timings, args.runs, note)
    print(f"## {tables[0]['title']}\n")
    print(f"{common.machine_description()}; {tables[0]['note']}\n")
    print(common.markdown_table(tables[0]["columns"], tables[0]["rows"]))
    if args.results_dir is not None:
        common.write_result("inference", tables, args.results_dir, params_md5=params_md5, args=script_args,
                            measured_at=measured_at)


if __name__ == "__main__":
    main()
