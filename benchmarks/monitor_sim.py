"""Monitoring simulation: the running service fed airline tweets, then another domain.

    python benchmarks/monitor_sim.py [--rows 1000]

Starts `sentiment-pipeline serve` on this project's model (run `dvc repro` first) with a
temporary SQLite prediction log, sends the test split's raw tweets (never seen in training) one
request each, runs `sentiment-pipeline monitor` on that window, then sends product-review-like
text from the benchmark's synthetic generator and runs it again. Prints every check of both
windows and the exit codes (expected: 0, then 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))  # the sibling scripts, also when imported from elsewhere
from pipeline_bench import synthetic_reviews  # noqa: E402
from serve_bench import free_port, wait_ready  # noqa: E402


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
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="monitor-sim-"))
    env = {**os.environ, "SENTIMENT_SERVE_DATABASE_URL": f"sqlite:///{workdir / 'log.db'}",
           "SENTIMENT_LOG_LEVEL": "warning"}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "sentiment_pipeline", "serve", "--project", str(ROOT),
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    windows = {}
    try:
        wait_ready(f"{url}/healthz", server)
        tweets = pd.read_csv(ROOT / "data/processed/test.csv", dtype=str, keep_default_na=False)["raw"]
        tweets = tweets.sample(min(args.rows, len(tweets)), random_state=0).tolist()
        for name, texts in (("airline tweets (test split)", tweets),
                            ("synthetic product reviews", synthetic_reviews(args.rows, seed=99)["text"].tolist())):
            asyncio.run(post_each(url, texts))
            windows[name] = monitor(len(texts), env, workdir / name.split()[0])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    names = list(windows)
    print(f"## Monitoring simulation ({args.rows} predictions per window, through the running service)\n")
    print("| check | threshold | " + " | ".join(names) + " |\n| --- | --- | " + " | ".join("---" for _ in names) + " |")
    first = windows[names[0]][1]
    for i, check in enumerate(first["checks"]):
        cells = []
        for name in names:
            c = windows[name][1]["checks"][i]
            cells.append("n/a" if c["value"] is None else f"{c['value']:.4f}{' **drift**' if c['drift'] else ''}")
        print(f"| {check['name']} | {check['threshold']} | " + " | ".join(cells) + " |")
    print("| exit code | | " + " | ".join(str(windows[n][0]) for n in names) + " |")
    print("| monitor seconds | | " + " | ".join(f"{windows[n][2]:.1f}" for n in names) + " |")
    for name in names:
        perf = windows[name][1]["performance"]
        print(f"\n{name}: estimated accuracy {perf['estimated']['accuracy']:.4f} (unadapted "
              f"{perf['estimated']['unadapted']['accuracy']:.4f}) vs {perf['reference_estimated_accuracy']:.4f} estimated "
              f"and {perf['reference_accuracy']:.4f} measured on the test split")


if __name__ == "__main__":
    main()
