"""Data larger than memory: download -> preprocess -> featurize streamed, at growing sizes.

    python benchmarks/stream_bench.py                       # 100K, 1M, 10M synthetic reviews
    python benchmarks/stream_bench.py --sizes 100000,1000000 --chunk-rows 50000
    python benchmarks/stream_bench.py --sizes 1000000 --backends local,dask --dask-workers 1,2

For each size a seeded synthetic review file (pipeline_bench.synthetic_review_chunks,
with 3% exact and 2% case/mention duplicates mixed in, so deduplication has work) is written in
chunks, then each stage's streaming function runs in a fresh process on the previous one's
output, with the project's params plus ``chunk_rows`` on all three stages and
``featurize.vectorizer: hashing``. ``--backends`` lists where preprocess and featurize process their
chunks: ``local`` (``n_jobs`` processes) and/or ``dask`` (a LocalCluster of each of
``--dask-workers`` single-threaded worker processes, started by the step's process before its
warm-up; download runs once per size). Every backend's outputs must be the same bytes: the run
fails otherwise. Measured per (size, backend, step): seconds of the step itself (after an untimed
warm-up on 2,000 rows that imports everything and starts the worker processes), time per row, the
CPU seconds the whole process tree spent in the step (user + system, from /proc: what the step
costs whatever else the machine runs), and its peak resident memory (the stage process
plus its workers, sampled every 50 ms from /proc; shared pages counted once per process, so an
upper bound). Optionally one LinearSVC fit on the largest feature set that fits the --fit-max-rows
limit, to state the train stage's cost. Markdown to stdout, JSON to --output, the table to
benchmarks/results/stream.json (--results-dir), with the md5 of the params measured under.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import typer

if __package__:  # imported as benchmarks.stream_bench
    from . import common
else:  # run as python benchmarks/stream_bench.py: this folder is first on sys.path
    import common

log = logging.getLogger("stream_bench")
app = typer.Typer(add_completion=False)
ROOT = common.ROOT
STEPS = ("download", "preprocess", "featurize")
WARMUP_ROWS = 2000
# what each backend's outputs are compared by: every file the two stages write
OUTPUTS = ("data/processed/train.csv", "data/processed/test.csv", "data/features/X_train.npz",
           "data/features/X_test.npz", "data/features/y_train.npy", "data/features/y_test.npy")


# ----------------------------------------------------------------------------- data
def write_source(path: Path, n_rows: int, seed: int) -> None:
    """Synthetic reviews with duplicates: every 33rd row repeats an earlier one exactly, every
    50th repeats one with upper case and a mention added (same text after cleaning)."""
    import numpy as np

    from sentiment_pipeline.pipeline.streaming import csv_lines

    rng = np.random.default_rng(seed + 1)
    header = True
    with open(path, "w", encoding="utf-8", newline="") as out:
        for chunk in common.synthetic_review_chunks(n_rows, seed):
            n = len(chunk)
            exact = rng.random(n) < 1 / 33
            variant = ~exact & (rng.random(n) < 1 / 50)
            source = rng.integers(0, n, n)
            texts = chunk["text"].to_numpy(object).copy()
            labels = chunk["label"].to_numpy(object).copy()
            texts[exact], labels[exact] = texts[source[exact]], labels[source[exact]]
            texts[variant] = ["@someone " + t.upper() for t in texts[source[variant]]]
            chunk = chunk.assign(text=texts, label=labels)
            out.write(csv_lines(chunk, header))
            header = False


def stream_params(project_params: Path, workdir: Path, chunk_rows: int, n_jobs: int, dask_workers: int = 0) -> Path:
    """The project's params with every data stage streamed (and, with ``dask_workers``, preprocess and
    featurize on a LocalCluster of that many workers), written to ``workdir``."""
    params = common.use_file_source(common.read_params(project_params), "source.csv", chunk_rows=chunk_rows,
                                    min_rows=10)
    where = {"backend": "dask", "scheduler_address": None, "dask_workers": dask_workers} if dask_workers else {}
    params["preprocess"].update(chunk_rows=chunk_rows, n_jobs=n_jobs, **where)
    params["featurize"].update(chunk_rows=chunk_rows, n_jobs=n_jobs, vectorizer="hashing", **where)
    return common.write_params(params, workdir / "params.yaml")


def file_md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - a fingerprint
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- memory
def _tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in KiB (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and all its descendants: each live
    process's own time plus that of the children it reaped (Linux /proc/<pid>/stat)."""
    ticks, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def run_sampled(args: list[str], cwd: Path, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """Run a child; return it with the peak RSS (MB) of its process tree."""
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_kb(process.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr), peak[0] / 1024


# ----------------------------------------------------------------------------- one step
def _step(step: str, workdir: Path, params_file: Path, cluster=None) -> None:
    from sentiment_pipeline.core import paths
    from sentiment_pipeline.core.config import load_params
    from sentiment_pipeline.core.files import write_joblib
    from sentiment_pipeline.pipeline.data import stream_source
    from sentiment_pipeline.pipeline.features import featurize_stream
    from sentiment_pipeline.pipeline.preprocess import preprocess_stream

    params = load_params(params_file)
    if step == "download":
        stream_source(params.download, params.train.cv_folds, workdir / paths.RAW_FILE)
    elif step == "preprocess":
        preprocess_stream(workdir / paths.RAW_FILE, params.preprocess, workdir / paths.TRAIN_FILE,
                          workdir / paths.TEST_FILE, cluster=cluster)
    elif step == "featurize":
        vectorizer, _ = featurize_stream(workdir / paths.TRAIN_FILE, workdir / paths.TEST_FILE,
                                         params.featurize, workdir / paths.FEATURES_DIR, cluster=cluster)
        write_joblib(vectorizer, workdir / paths.VECTORIZER_FILE)
    else:
        raise typer.BadParameter(f"unknown step {step!r}")


def _warm_up(step: str, workdir: Path, params_file: Path, cluster=None) -> float:
    """The step on the first rows of its input in a scratch directory: imports, worker start-up."""
    from sentiment_pipeline.core import paths

    started = time.perf_counter()
    scratch = workdir / "warmup"
    scratch.mkdir(exist_ok=True)
    sources = {"download": ("source.csv", "source.csv"), "preprocess": (paths.RAW_FILE, paths.RAW_FILE),
               "featurize": (paths.TRAIN_FILE, paths.TRAIN_FILE)}
    inputs = [sources[step]] + ([(paths.TEST_FILE, paths.TEST_FILE)] if step == "featurize" else [])
    for source, target in inputs:
        (scratch / target).parent.mkdir(parents=True, exist_ok=True)
        with open(workdir / source, encoding="utf-8") as src, open(scratch / target, "w", encoding="utf-8") as dst:
            for _, line in zip(range(WARMUP_ROWS + 1), src, strict=False):
                dst.write(line)
    os.chdir(scratch)
    try:
        _step(step, scratch, workdir / "params.yaml", cluster)
    finally:
        os.chdir(workdir)
    return time.perf_counter() - started


@app.command("child", hidden=True)
def child(step: str = typer.Option(...), workdir: Path = typer.Option(...)) -> None:
    from contextlib import nullcontext

    from sentiment_pipeline.core.config import load_params
    from sentiment_pipeline.pipeline.cluster import stage_cluster

    os.chdir(workdir)
    started = time.perf_counter()
    section = getattr(load_params(workdir / "params.yaml"), step, None) if step != "download" else None
    # the stage's own cluster (backend: dask), started once for the warm-up and the timed step
    with stage_cluster(step, section) if section is not None else nullcontext() as cluster:
        cluster_seconds = time.perf_counter() - started
        warmup = _warm_up(step, workdir, workdir / "params.yaml", cluster)
        cpu, own, started = tree_cpu_seconds(os.getpid()), _own_cpu_seconds(), time.perf_counter()
        _step(step, workdir, workdir / "params.yaml", cluster)
        seconds, cpu = time.perf_counter() - started, tree_cpu_seconds(os.getpid()) - cpu
        own = _own_cpu_seconds() - own
    own_peak = common.peak_rss_mb()
    typer.echo(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "stage_process_cpu_seconds": own,
                           "warmup_seconds": warmup, "cluster_start_seconds": cluster_seconds,
                           "stage_process_peak_rss_mb": own_peak}))


def _own_cpu_seconds() -> float:
    """This process's CPU seconds (all its threads: with a LocalCluster, the scheduler's too)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@app.command("fit-child", hidden=True)
def fit_child(workdir: Path = typer.Option(...), C: float = typer.Option(0.2)) -> None:
    """One LinearSVC fit on the streamed training features (what each CV fit of train@linear_svm
    does, times its calibration folds)."""
    from sklearn.svm import LinearSVC

    from sentiment_pipeline.pipeline.features import FeatureSet

    started = time.perf_counter()
    features = FeatureSet.load(workdir / "data/features")
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    LinearSVC(C=C, class_weight="balanced", random_state=0).fit(features.X_train, features.y_train)
    typer.echo(json.dumps({"load_seconds": loaded, "seconds": time.perf_counter() - started,
                           "rows": features.X_train.shape[0], "nnz": int(features.X_train.nnz)}))


# ----------------------------------------------------------------------------- driver
def _machine() -> str:
    m = common.machine_info()
    return f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}"


TITLE = "Streaming download -> preprocess -> featurize (hashing) on synthetic reviews"


def _where(backend: str, workers: int, n_jobs: int) -> str:
    return f"local, n_jobs {n_jobs}" if backend == "local" else f"dask, {workers} worker{'s' if workers > 1 else ''}"


def _summary_lines(report: dict) -> list[str]:
    """What follows the table: every size's total per backend, the LinearSVC fit."""
    lines = []
    for key, total in report["totals"].items():
        size, _, where = str(key).partition("|")
        lines.append(f"All three steps at {int(size):,} rows{f' ({where})' if where else ''}: {total['seconds']:.1f} s, "
                     f"{total['us_per_row']:.1f} µs/row ({total['vs_smallest']:.2f}x the smallest size), "
                     f"peak RSS {total['peak_rss_mb']:,.0f} MB")
    for fit in report.get("fits", []):
        lines.append(f"One LinearSVC fit (C=0.2, balanced) on {fit['rows']:,} streamed training rows "
                     f"({fit['nnz']:,} non-zeros): {fit['seconds']:.1f} s, load {fit['load_seconds']:.1f} s, "
                     f"peak RSS {fit['peak_rss_mb']:,.0f} MB")
    if report.get("identical"):
        lines.append(f"Preprocess and featurize wrote the same bytes on every backend ({report['identical']})")
    return lines


def _settings(report: dict) -> str:
    md5 = report.get("params_md5")
    return (f"chunk_rows {report['chunk_rows']}, n_jobs {report['n_jobs']}, params.yaml (download, preprocess, "
            f"featurize) md5 "
            f"{md5[:12] if md5 else 'not recorded'} (with chunk_rows on the three stages and "
            "featurize.vectorizer: hashing)")


def _cpu(row: dict) -> str:
    if "cpu_seconds" not in row:
        return "—"
    own = row.get("stage_process_cpu_seconds")
    return f"{row['cpu_seconds']:.0f}" + (f" ({own:.0f})" if own is not None else "")


def report_table(report: dict) -> dict:
    """The per (size, backend, step) table (``common.table``) as :func:`render` prints it, the lines
    after it as its note."""
    return common.table(
        TITLE, ["rows", "step", "where", "seconds", "µs/row", "µs/row vs smallest", "CPU s: tree (stage process)",
                "peak RSS MB (tree)"],
        [[f"{r['size']:,}", r["step"], r.get("where", "local"), f"{r['seconds']:.1f}", f"{r['us_per_row']:.1f}",
          f"{r['vs_smallest']:.2f}x", _cpu(r), f"{r['peak_rss_mb']:,.0f}"] for r in report["rows"]],
        note=". ".join([_settings(report), *_summary_lines(report)]) + ".")


def render(report: dict) -> str:
    result = report_table(report)
    lines = [f"## {TITLE}", report["machine"], _settings(report), "",
             common.markdown_table(result["columns"], result["rows"])]
    lines += [f"\n{line}" for line in _summary_lines(report)]
    return "\n".join(lines) + "\n"


def _at_size(configurations: list[tuple[str, int]], size: int, dask_max_rows: int) -> list[tuple[str, int]]:
    """The configurations measured at ``size``: Dask's only up to ``dask_max_rows`` (0: always)."""
    return [(b, w) for b, w in configurations if b == "local" or not dask_max_rows or size <= dask_max_rows]


def _backends(backends: str, dask_workers: str) -> list[tuple[str, int]]:
    """(backend, workers) to measure: ("local", 0) and ("dask", n) for each of ``dask_workers``."""
    chosen = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = sorted(set(chosen) - {"local", "dask"})
    if unknown or not chosen:
        raise typer.BadParameter(f"--backends takes local and/or dask, got {backends!r}")
    workers = sorted({int(w) for w in dask_workers.split(",") if w.strip()})
    if "dask" in chosen and (not workers or min(workers) < 1):
        raise typer.BadParameter(f"--dask-workers takes counts of at least 1, got {dask_workers!r}")
    return ([("local", 0)] if "local" in chosen else []) + ([("dask", w) for w in workers] if "dask" in chosen else [])


def _measure(step: str, size: int, step_dir: Path, env: dict, where: str) -> dict:
    log.info("%d rows: %s (%s)", size, step, where)
    result, peak = run_sampled([sys.executable, __file__, "child", "--step", step, "--workdir", str(step_dir)],
                               step_dir, env)
    if result.returncode:
        raise SystemExit(f"{step} ({where}) on {size} rows failed:\n{result.stderr[-3000:]}")
    record = common.last_json_line(result.stdout)
    record.update(size=size, step=step, where=where, peak_rss_mb=peak, us_per_row=record["seconds"] / size * 1e6)
    log.info("  %.1f s, %.1f µs/row, %.0f CPU s, peak RSS %.0f MB", record["seconds"], record["us_per_row"],
             record["cpu_seconds"], peak)
    return record


@app.command("run")
def run(sizes: str = typer.Option("100000,1000000,10000000"), chunk_rows: int = typer.Option(100_000),
        n_jobs: int = typer.Option(-1), seed: int = typer.Option(0),
        backends: str = typer.Option("local", help="where preprocess and featurize run: local and/or dask"),
        dask_workers: str = typer.Option("1,2", help="with dask: each LocalCluster size to measure"),
        dask_max_rows: int = typer.Option(0, min=0, help="with dask: measure it only at sizes up to this (0: every size)"),
        fit_max_rows: int = typer.Option(1_000_000, help="LinearSVC fit on the largest size up to this"),
        output: Path = typer.Option(Path(tempfile.gettempdir()) / "stream-benchmark.json"),
        workdir: Path = typer.Option(None),
        results_dir: Path = typer.Option(common.RESULTS_DIR, help=common.RESULTS_DIR_HELP)) -> None:
    common.setup_logging("INFO", fmt="%(asctime)s %(message)s")
    measured_at, params_md5 = common.utc_now(), common.params_md5(ROOT / "params.yaml", "stream")
    counts = sorted(int(float(s)) for s in sizes.split(","))
    configurations = _backends(backends, dask_workers)
    if not all(_at_size(configurations, size, dask_max_rows) for size in counts):
        raise typer.BadParameter(f"--dask-max-rows {dask_max_rows} leaves sizes above it with no backend: add local "
                                 "to --backends")
    env = common.subprocess_env(ROOT)
    rows, fits, identical = [], [], []
    base = Path(tempfile.mkdtemp(prefix="stream-bench-", dir=workdir))
    for size in counts:
        step_dir = base / f"rows-{size}"
        step_dir.mkdir()
        log.info("%d rows: writing the source file", size)
        write_source(step_dir / "source.csv", size, seed)
        stream_params(ROOT / "params.yaml", step_dir, chunk_rows, n_jobs)
        rows.append(_measure("download", size, step_dir, env, "one process"))
        fingerprints: dict[str, dict[str, str]] = {}
        for backend, workers in _at_size(configurations, size, dask_max_rows):
            where = _where(backend, workers, n_jobs)
            stream_params(ROOT / "params.yaml", step_dir, chunk_rows, n_jobs, workers if backend == "dask" else 0)
            for step in STEPS[1:]:
                rows.append(_measure(step, size, step_dir, env, where))
            fingerprints[where] = {name: file_md5(step_dir / name) for name in OUTPUTS}
        first = next(iter(fingerprints.values()))
        differing = [where for where, found in fingerprints.items() if found != first]
        if differing:
            raise SystemExit(f"{size} rows: {', '.join(differing)} wrote other bytes than {next(iter(fingerprints))}")
        if len(fingerprints) > 1:
            identical.append(f"{size:,} rows: X_train.npz md5 {first['data/features/X_train.npz'][:12]}")
        if size <= fit_max_rows and size == max(s for s in counts if s <= fit_max_rows):
            log.info("%d rows: one LinearSVC fit", size)
            result, peak = run_sampled([sys.executable, __file__, "fit-child", "--workdir", str(step_dir)], step_dir, env)
            if result.returncode == 0:
                fits.append({**common.last_json_line(result.stdout), "size": size, "peak_rss_mb": peak})
        subprocess.run(["rm", "-rf", str(step_dir)], check=False)
    smallest: dict = {}
    for r in rows:
        smallest.setdefault((r["step"], r["where"]), r["us_per_row"])
        r["vs_smallest"] = r["us_per_row"] / smallest[r["step"], r["where"]]
    totals: dict = {}
    for backend, workers in configurations:
        where = _where(backend, workers, n_jobs)
        for size in counts:
            if (backend, workers) not in _at_size(configurations, size, dask_max_rows):
                continue
            mine = [r for r in rows if r["size"] == size and r["where"] in (where, "one process")]
            total = {"seconds": sum(r["seconds"] for r in mine), "peak_rss_mb": max(r["peak_rss_mb"] for r in mine)}
            total["us_per_row"] = total["seconds"] / size * 1e6
            totals[f"{size}|{where}" if len(configurations) > 1 else size] = total
    for key, total in totals.items():
        where = str(key).partition("|")[2]
        first_key = next(k for k in totals if str(k).partition("|")[2] == where)
        total["vs_smallest"] = total["us_per_row"] / totals[first_key]["us_per_row"]
    report = {"machine": _machine(), "chunk_rows": chunk_rows, "n_jobs": n_jobs, "rows": rows,
              "totals": totals, "fits": fits, "params_md5": params_md5, "identical": "; ".join(identical)}
    output.write_text(json.dumps(report, indent=2))
    base.rmdir() if not any(base.iterdir()) else None
    typer.echo(render(report))
    common.write_result("stream", [report_table(report)], results_dir, params_md5=params_md5,
                        args=common.script_args(), measured_at=measured_at)


if __name__ == "__main__":
    common.run_app(app, {"run", "child", "fit-child"}, "stream_bench.py")
