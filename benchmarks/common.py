"""What the benchmark scripts share, and the one writer of their result files.

Every benchmark writes ``benchmarks/results/<name>.json`` through :func:`write_result`; the docs
tables are generated from those files, and :func:`validate_result` is the schema both sides use::

    {"benchmark": "serve", "command": "make bench-serve", "measured_at": "2026-12-07T04:00:00Z",
     "machine": "2-core Intel(R) Xeon(R) ..., 23 GiB RAM, Linux x86_64", "commit": "<short sha or null>",
     "params_md5": "<md5 of params.yaml as measured, or null>",
     "tables": [{"title": "...", "columns": ["col", ...], "rows": [["cell", 1.23, ...], ...],
                 "note": "one paragraph, or null"}]}

A script run as ``python benchmarks/<script>.py`` imports this module as ``common`` (its folder is
first on sys.path); imported as ``benchmarks.<script>`` (the tests) it imports
``benchmarks.common``. Only the standard library is imported here at module level: the docs
generator can import the validator cheaply, and dask_bench pins NumPy's kernels before NumPy loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger("benchmarks.common")

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"

# Each benchmark's result name, its make target and the variable that passes options through.
MAKE_TARGETS = {
    "pipeline": ("bench", "BENCH_ARGS"),
    "serve": ("bench-serve", "SERVE_BENCH_ARGS"),
    "monitor": ("bench-monitor", "MONITOR_SIM_ARGS"),
    "dask": ("bench-dask", "DASK_BENCH_ARGS"),
    "stream": ("bench-stream", "STREAM_BENCH_ARGS"),
    "stream_train": ("bench-stream-train", "STREAM_TRAIN_BENCH_ARGS"),
    "datasets": ("bench-datasets", "DATASETS_ARGS"),
    "inference": ("bench-inference", "INFERENCE_BENCH_ARGS"),
    "log": ("bench-log", "LOG_BENCH_ARGS"),
}
# The params.yaml sections a benchmark's numbers depend on, where that is not the whole file: its
# recorded md5 covers only these, so that adding a training family does not make the data stages'
# table stale. A benchmark not listed here hashes every section.
PARAM_SECTIONS: dict[str, tuple[str, ...]] = {"stream": ("download", "preprocess", "featurize"), "log": ()}
RESULT_KEYS = ("benchmark", "command", "measured_at", "machine", "commit", "params_md5", "tables")
TABLE_KEYS = ("title", "columns", "rows", "note")
RESULTS_DIR_HELP = "Where the result file <name>.json goes (the docs tables are generated from it)."


# ----------------------------------------------------------------------------- numbers, machine
def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None; None when there are none."""
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU, cores, RAM, Python and platform of this machine, as every benchmark records them."""
    try:
        ram_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram_bytes = 0
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_gib": round(ram_bytes / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def machine_description(info: dict | None = None) -> str:
    """One line for a result file: ``2-core <cpu>, 23.5 GiB RAM, Linux x86_64``."""
    info = info or machine_info()
    return (f"{info['cores']}-core {info['cpu']}, {info['ram_gib']:g} GiB RAM, "
            f"{platform.system()} {platform.machine()}")


# ----------------------------------------------------------------------------- result files
def utc_now() -> str:
    """The current time as result files record it: ``2026-12-07T04:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def git_commit(root: Path = ROOT) -> str | None:
    """The short hash of ``root``'s HEAD; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    except OSError:
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def params_md5(path: Path = ROOT / "params.yaml", benchmark: str | None = None) -> str | None:
    """md5 of the params a benchmark measures under (read when the run starts): of their values,
    the YAML parsed and written as canonical JSON, so that editing a comment does not make every
    result stale; for a benchmark in :data:`PARAM_SECTIONS`, of those sections only.
    scripts/docs_tables.py compares it with today's."""
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError:
        return None
    sections = PARAM_SECTIONS.get(benchmark or "")
    if sections is not None and isinstance(values, dict):
        values = {name: values.get(name) for name in sections}
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.md5(canonical.encode()).hexdigest()


def script_args(argv: Sequence[str] | None = None) -> list[str]:
    """The options the running benchmark script was given: ``sys.argv[1:]`` when the process is
    ``python benchmarks/<script>.py``, nothing otherwise (e.g. under pytest)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv or Path(argv[0]).resolve().parent != Path(__file__).resolve().parent:
        return []
    return argv[1:]


def benchmark_command(name: str, args: Sequence[str] = ()) -> str:
    """How to repeat a measurement: its make target, with the options it ran with (leaving out
    where the results went)."""
    target, variable = MAKE_TARGETS[name]
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--results-dir":
            skip = True
        elif not arg.startswith("--results-dir=") and not (not kept and arg == "run"):
            kept.append(arg)
    return f'make {target} {variable}="{shlex.join(kept)}"' if kept else f"make {target}"


def _is_cell(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, str) or (isinstance(value, int | float) and math.isfinite(value))


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], note: str | None = None) -> dict:
    """One table of a result file. Cells are strings or numbers, already rounded for display."""
    return {"title": title, "columns": list(columns), "rows": [list(row) for row in rows], "note": note}


def validate_result(data: Any, name: str | None = None) -> list[str]:
    """What is wrong with a result file's content (empty: valid). ``name`` is the file's stem,
    which must be its ``benchmark``."""
    if not isinstance(data, dict):
        return [f"a result is a JSON object, not {type(data).__name__}"]
    problems = []
    if list(data) != list(RESULT_KEYS):
        problems.append(f"keys must be {list(RESULT_KEYS)} in this order, got {list(data)}")
    benchmark = data.get("benchmark")
    if benchmark not in MAKE_TARGETS:
        problems.append(f"benchmark {benchmark!r} is none of {sorted(MAKE_TARGETS)}")
    elif name is not None and benchmark != name:
        problems.append(f"benchmark {benchmark!r} in the file named {name!r}")
    if not isinstance(data.get("command"), str) or not data.get("command"):
        problems.append("command must be a non-empty string")
    measured_at = data.get("measured_at")
    if measured_at is not None and not (isinstance(measured_at, str) and re.fullmatch(
            r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?", measured_at)):
        problems.append(f"measured_at {measured_at!r} is neither null nor YYYY-MM-DD[THH:MM:SSZ] (UTC)")
    machine = data.get("machine")
    if machine is not None and not (isinstance(machine, str) and machine.strip()):
        problems.append("machine must be a non-empty string or null")
    commit = data.get("commit")
    if commit is not None and not (isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{4,40}", commit)):
        problems.append(f"commit {commit!r} is neither null nor a git hash")
    md5 = data.get("params_md5")
    if md5 is not None and not (isinstance(md5, str) and re.fullmatch(r"[0-9a-f]{32}", md5)):
        problems.append(f"params_md5 {md5!r} is neither null nor an md5 hex digest")
    tables = data.get("tables")
    if not isinstance(tables, list) or not tables:
        return problems + ["tables must be a non-empty list"]
    for i, entry in enumerate(tables):
        where = f"tables[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} is not an object")
            continue
        if list(entry) != list(TABLE_KEYS):
            problems.append(f"{where}: keys must be {list(TABLE_KEYS)} in this order, got {list(entry)}")
        title, columns, rows, note = (entry.get(key) for key in TABLE_KEYS)
        if not isinstance(title, str) or not title.strip() or "\n" in title:
            problems.append(f"{where}: title must be a non-empty line of text")
        if note is not None and (not isinstance(note, str) or not note.strip() or "\n" in note):
            problems.append(f"{where}: note must be one paragraph (a line of text) or null")
        if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
            problems.append(f"{where}: columns must be a non-empty list of strings")
            continue
        if not isinstance(rows, list) or not rows:
            problems.append(f"{where}: rows must be a non-empty list")
            continue
        for j, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                problems.append(f"{where}.rows[{j}]: a list of {len(columns)} cells (one per column) expected")
            elif not all(_is_cell(cell) for cell in row):
                bad = next(cell for cell in row if not _is_cell(cell))
                problems.append(f"{where}.rows[{j}]: cell {bad!r} is neither a string nor a finite number")
    return problems


def read_result(path: Path) -> dict:
    """A result file's content; ValueError naming the file and every problem if it is not valid."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not readable as JSON: {exc}") from None
    problems = validate_result(data, path.stem)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return data


def format_result(record: dict) -> str:
    """A result as its file holds it: indented JSON with each table row on one line (diffs read
    row by row)."""
    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = ["{"] + [f"  {dump(key)}: {dump(value)}," for key, value in record.items() if key != "tables"]
    lines.append('  "tables": [')
    for i, entry in enumerate(record["tables"]):
        lines.append("    {")
        for key, value in entry.items():
            comma = "," if key != list(entry)[-1] else ""
            if key == "rows":
                lines.append('      "rows": [')
                lines += [f"        {dump(row)}{',' if j < len(value) - 1 else ''}" for j, row in enumerate(value)]
                lines.append(f"      ]{comma}")
            else:
                lines.append(f"      {dump(key)}: {dump(value)}{comma}")
        lines.append("    }" + ("," if i < len(record["tables"]) - 1 else ""))
    lines += ["  ]", "}"]
    text = "\n".join(lines) + "\n"
    if json.loads(text) != record:  # pragma: no cover - a bug here, not in the record
        raise AssertionError("format_result lost something")
    return text


def write_result(name: str, tables: Sequence[dict], results_dir: Path = RESULTS_DIR, *,
                 params_md5: str | None, args: Sequence[str] = (), measured_at: str | None = None,
                 machine: str | None = None, commit: str | None = None) -> Path:
    """Write ``<results_dir>/<name>.json`` (atomically) and return its path. ``params_md5`` is the
    hash of the params file taken when the measurement started (:func:`params_md5`); ``args``
    the script's options (:func:`script_args`); the time, machine and commit default to now,
    this machine and this checkout's HEAD."""
    record = {"benchmark": name, "command": benchmark_command(name, args),
              "measured_at": measured_at or utc_now(), "machine": machine or machine_description(),
              "commit": commit if commit is not None else git_commit(),
              "params_md5": params_md5, "tables": [dict(entry) for entry in tables]}
    return save_result(record, results_dir)


def save_result(record: dict, results_dir: Path = RESULTS_DIR) -> Path:
    """Validate a complete result and write it as ``<results_dir>/<benchmark>.json``, atomically
    (what :func:`write_result` does once it has filled in the command, time, machine and commit).
    Tests pass a temporary ``results_dir``: the default is the committed results."""
    name = record.get("benchmark") if isinstance(record, dict) else None
    problems = validate_result(record)
    if problems:
        raise ValueError(f"result {name!r} does not follow the schema: " + "; ".join(problems))
    target = Path(results_dir) / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staged = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(format_result(record))
        os.chmod(staged, 0o644)  # mkstemp makes it private; a result file is for everyone
        os.replace(staged, target)
    finally:
        Path(staged).unlink(missing_ok=True)
    log.info("results written to %s", target)
    return target


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- processes
def setup_logging(level: str | None = None, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s",
                  quiet: Sequence[str] = ("dvclive", "dvc", "matplotlib", "urllib3")) -> None:
    """Progress to stderr; ``level`` defaults to $SENTIMENT_LOG_LEVEL, else INFO; the ``quiet``
    loggers at WARNING."""
    logging.basicConfig(level=(level or os.environ.get("SENTIMENT_LOG_LEVEL", "INFO")).upper(),
                        format=fmt, datefmt="%H:%M:%S")
    for noisy in quiet:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_logged(args: list[str], cwd: Path, env: dict, log_file: Path) -> float:
    """Run a command with its output in ``log_file``; return its wall time; fail loudly."""
    started = time.perf_counter()
    with open(log_file, "ab") as out:
        result = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(args)} failed (exit {result.returncode}) in {cwd}:\n{tail}")
    return seconds


def subprocess_env(project: Path | None = None, profile: Path | None = None) -> dict:
    """Environment for child processes: this interpreter's tools first on PATH, the snapshot's
    code ahead of the (editable) installed package, no DVC analytics."""
    env = {**os.environ,
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
           "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "benchmark", "GIT_AUTHOR_EMAIL": "benchmark@example.com",
           "GIT_COMMITTER_NAME": "benchmark", "GIT_COMMITTER_EMAIL": "benchmark@example.com"}
    if project is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project / "src"), os.environ.get("PYTHONPATH")]))
    env.pop("SENTIMENT_PIPELINE_PROFILE", None)
    if profile is not None:
        env["SENTIMENT_PIPELINE_PROFILE"] = str(profile)
    return env


def last_json_line(stdout: str) -> dict:
    """What a child process reported: the JSON object on the last line of its stdout."""
    return json.loads(stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_app(app, commands: set[str], prog_name: str) -> None:  # pragma: no cover - entry point
    """Run a typer app whose default command is ``run``: options alone go to ``run``, and the
    hidden child commands are called by name."""
    argv = sys.argv[1:]
    if not argv or argv[0] not in commands:
        argv = ["run", *argv]
    app(args=argv, prog_name=prog_name)


# ----------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.communicate()[1][-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("server not ready")


@contextlib.contextmanager
def running_server(args: list[str], ready_url: str, env: dict | None = None,
                   stop_seconds: float = 60) -> Iterator[subprocess.Popen]:
    """A server process, started and waited for (``ready_url`` answers); on leaving, SIGTERM and
    its exit awaited (a server drains its work on SIGTERM)."""
    server = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(ready_url, server)
        yield server
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=stop_seconds)


def serve_command(port: int, workers: int | None = None, project: Path = ROOT) -> list[str]:
    """``sentiment-pipeline serve`` on this project's model, on loopback ``port``."""
    args = [sys.executable, "-m", "sentiment_pipeline", "serve", "--project", str(project), "--port", str(port)]
    return args + (["--workers", str(workers)] if workers is not None else [])


# ----------------------------------------------------------------------------- project snapshot, params
def project_files(root: Path) -> list[str]:
    """Every file git knows of or would add (tracked plus untracked, not ignored) that exists."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, capture_output=True, check=True).stdout
    return sorted({name for name in out.decode().split("\0") if name and (root / name).is_file()})


def snapshot_project(root: Path, dest: Path, prepare=None) -> Path:
    """Copy the project to ``dest`` and make it a git repository with one commit (DVC and
    dvclive expect one); the copy's own src/ is what runs there. ``prepare(dest, env)``, if
    given, runs before the commit (e.g. to change the copy's params)."""
    files = project_files(root)
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)
    log.info("snapshot of %d files in %s", len(files), dest)
    env = subprocess_env(dest)
    if prepare is not None:
        prepare(dest, env)
    for args in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                 ["git", "commit", "-qm", "benchmark snapshot"]):
        run_logged(args, dest, env, dest / "benchmark-setup.log")
    return dest


def read_params(path: Path) -> dict:
    """params.yaml as plain data; the typed loader's YAML 1.2 number rules when available."""
    try:
        from sentiment_pipeline.core.config import load_yaml
    except ImportError:  # pragma: no cover - the config module moved
        import yaml

        return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return load_yaml(path) or {}


def write_params(params: dict, path: Path) -> Path:
    import yaml

    Path(path).write_text(yaml.safe_dump(params, sort_keys=False))
    return Path(path)


def use_file_source(params: dict, path: Path | str, **download: Any) -> dict:
    """Point ``download`` at a local CSV file of ``text,label`` rows (plus any other
    ``download`` keys given)."""
    params["download"].update(source="file", path=str(path), text_column="text", label_column="label", **download)
    return params


# ----------------------------------------------------------------------------- synthetic reviews
_FUNCTION_WORDS = ("the i a to my you and it for on is was in of at with this me our that "
                   "we be so have just get your are from when they an now up can there all "
                   "what out been about will again").split()
_SENTIMENT_WORDS = {
    "negative": ("delayed cancelled lost rude worst terrible awful broken hours waiting late "
                 "stuck refund missed dirty horrible disappointed angry fail worse useless "
                 "unacceptable ridiculous never nothing problem complaint").split(),
    "neutral": ("question schedule gate change flight info status ticket booking check "
                "tomorrow route seat option policy update confirm number travel wondering "
                "baggage allowance boarding time").split(),
    "positive": ("thanks great love awesome amazing best friendly helpful excellent happy "
                 "perfect smooth wonderful appreciate nice good fantastic comfortable kind "
                 "enjoyed glad quick easy recommend").split(),
}
# The airline tweets' class balance: mostly complaints.
_LABEL_SHARES = {"negative": 0.63, "neutral": 0.21, "positive": 0.16}
_EXTRAS = ("@airline", "#travel", "http://t.co/abc123", "2 hours", "😊", "😠", "!!!", "sooo",
           "don't", "&amp;")


def _content_vocabulary(rng: np.random.Generator, size: int = 5000) -> np.ndarray:
    """Pronounceable made-up content words (a stand-in for nouns, places, names)."""
    import numpy as np

    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["ing", "er", "ly", "tion"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables, rng.integers(1, 4))))
    # Shuffled so that Zipf ranks (frequency) are unrelated to spelling.
    return rng.permutation(np.array(sorted(words), dtype=object))


def synthetic_reviews(n_rows: int, seed: int = 0, chunk: int = 100_000) -> pd.DataFrame:
    """:func:`synthetic_review_chunks` in one frame."""
    import pandas as pd

    return pd.concat(list(synthetic_review_chunks(n_rows, seed, chunk)), ignore_index=True)


def synthetic_review_chunks(n_rows: int, seed: int = 0, chunk: int = 100_000) -> Iterator[pd.DataFrame]:
    """Seeded short reviews with three imbalanced labels: 5-40 words each, Zipf-distributed
    content words, function words, and sentiment words of the row's label (some from another
    label, as real text is noisy), sometimes with a mention, hashtag, URL, number or emoji so
    that every cleaning rule has work."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    content = _content_vocabulary(rng)
    zipf = 1.0 / np.arange(1, len(content) + 1)
    zipf /= zipf.sum()
    function = np.array(_FUNCTION_WORDS, dtype=object)
    labels = np.array(list(_LABEL_SHARES))
    sentiment = [np.array(_SENTIMENT_WORDS[label], dtype=object) for label in labels]
    extras = np.array(_EXTRAS, dtype=object)
    for start in range(0, n_rows, chunk):  # chunks bound the memory of the token arrays
        texts: list[str] = []
        n = min(chunk, n_rows - start)
        row_labels = rng.choice(len(labels), n, p=list(_LABEL_SHARES.values()))
        lengths = rng.integers(5, 41, n)
        total = int(lengths.sum())
        kind = rng.random(total)  # < 0.15 sentiment word, < 0.55 function word, else content
        token_label = np.repeat(row_labels, lengths)
        noisy = rng.random(total) < 0.2
        token_label = np.where(noisy, rng.integers(0, len(labels), total), token_label)
        tokens = content[rng.choice(len(content), total, p=zipf)]
        is_function = (kind >= 0.15) & (kind < 0.55)
        tokens[is_function] = function[rng.integers(0, len(function), int(is_function.sum()))]
        for k, words in enumerate(sentiment):
            pick = (kind < 0.15) & (token_label == k)
            tokens[pick] = words[rng.integers(0, len(words), int(pick.sum()))]
        extra = np.where(rng.random(n) < 0.3, extras[rng.integers(0, len(extras), n)], "")
        ends = np.cumsum(lengths)
        for row, (stop, length) in enumerate(zip(ends, lengths, strict=True)):
            text = " ".join(tokens[stop - length:stop])
            texts.append(f"{text} {extra[row]}" if extra[row] else text)
        yield pd.DataFrame({"text": texts, "label": labels[row_labels]}, index=pd.RangeIndex(start, start + n))
