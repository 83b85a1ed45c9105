"""Monitoring simulation: the running service fed airline tweets, then another domain.

    python benchmarks/monitor_sim.py [--rows 1000]

Starts `sentiment-pipeline serve` on this project's model (run `dvc repro` first) with a
temporary SQLite prediction log, sends the test split's raw tweets (never seen in training) one
request each, runs `sentiment-pipeline monitor` on that window, then sends product-review-like
text from the benchmark's synthetic generator and runs it again. Prints every check of both
windows and the exit codes (expected: 0, then 1); the table also to
benchmarks/results/monitor.json (--results-dir).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

if __package__:  # imported as benchmarks.monitor_sim
    from . import common
else:  # run as python benchmarks/monitor_sim.py: this folder is first on sys.path
    import common

ROOT = common.ROOT


async def post_each(url: str, texts: list[str], concurrency: int = 20) -> None:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        async def one(text: str) -> None:
            async with limit:
                (await http.post("/v1/predict", json={"text": text})).raise_for_status()
        await asyncio.gather(*(one(t) for t in texts))


def monitor(rows: int, env: dict, output: Path) -> tuple[int, dict, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sentiment_pipeline", "monitor", "--project", str(ROOT),
                           "--last", str(rows), "--output-dir", str(output)], env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr)
    return done.returncode, json.loads((output / "monitor.json").read_text()), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="predictions per window")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR, help=common.RESULTS_DIR_HELP)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="monitor-sim-"))
    env = {**os.environ, "SENTIMENT_SERVE_DATABASE_URL": f"sqlite:///{workdir / 'log.db'}",
           "SENTIMENT_LOG_LEVEL": "warning"}
    measured_at, params_md5 = common.utc_now(), common.params_md5()
    port = common.free_port()
    url = f"http://127.0.0.1:{port}"
    windows = {}
    with common.running_server(common.serve_command(port), f"{url}/healthz", env):
        tweets = pd.read_csv(ROOT / "data/processed/test.csv", dtype=str, keep_default_na=False)["raw"]
        tweets = tweets.sample(min(args.rows, len(tweets)), random_state=0).tolist()
        for name, texts in (("airline tweets (test split)", tweets),
                            ("synthetic product reviews", common.synthetic_reviews(args.rows, seed=99)["text"].tolist())):
            asyncio.run(post_each(url, texts))
            windows[name] = monitor(len(texts), env, workdir / name.split()[0])
    result = report_table(windows, args.rows)
    print(f"## {result['title']}\n")
    # an empty cell printed as "| |", as before the result files
    print(common.markdown_table(result["columns"], result["rows"]).replace("|  |", "| |"))
    for line in _estimates(windows):
        print(f"\n{line}")
    common.write_result("monitor", [result], args.results_dir, params_md5=params_md5, args=common.script_args(),
                        measured_at=measured_at)


def _estimates(windows: dict) -> list[str]:
    """Per window: the estimated accuracy against the test split's."""
    lines = []
    for name, (_, report, _) in windows.items():
        perf = report["performance"]
        lines.append(f"{name}: estimated accuracy {perf['estimated']['accuracy']:.4f} (unadapted "
                     f"{perf['estimated']['unadapted']['accuracy']:.4f}) vs {perf['reference_estimated_accuracy']:.4f} "
                     f"estimated and {perf['reference_accuracy']:.4f} measured on the test split")
    return lines


def report_table(windows: dict, rows: int) -> dict:
    """Every check of every window, the exit codes and the monitor's seconds (``common.table``)."""
    names = list(windows)
    first = windows[names[0]][1]
    cells = []
    for i, check in enumerate(first["checks"]):
        row = [check["name"], f"{check['threshold']}"]
        for name in names:
            c = windows[name][1]["checks"][i]
            row.append("n/a" if c["value"] is None else f"{c['value']:.4f}{' **drift**' if c['drift'] else ''}")
        cells.append(row)
    cells.append(["exit code", "", *(windows[n][0] for n in names)])
    cells.append(["monitor seconds", "", *(f"{windows[n][2]:.1f}" for n in names)])
    return common.table(f"Monitoring simulation ({rows} predictions per window, through the running service)",
                        ["check", "threshold", *names], cells, note=". ".join(_estimates(windows)) + ".")


if __name__ == "__main__":
    main()
