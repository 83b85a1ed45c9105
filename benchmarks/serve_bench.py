"""Serving benchmark: our API against the usual Flask app, on this machine, in one run.

    python benchmarks/serve_bench.py [--seconds 30] [--connections 20]

Both servers load the same verified model from this project (run `dvc repro` first) and listen
on loopback; wrk (Debian package `wrk`) generates the load on the same cores. Reported per
server: requests/s, p50/p99 latency, errors; for ours also the batch endpoint's and the `predict`
command's texts per second, and the prediction log's row count against the requests answered.
Markdown to stdout, every number to --output, the tables to benchmarks/results/serve.json
(--results-dir).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

if __package__:  # imported as benchmarks.serve_bench
    from . import common
else:  # run as python benchmarks/serve_bench.py: this folder is first on sys.path
    import common

ROOT = common.ROOT
TEXTS = ["@united thanks, the crew was great!", "lost my bag AGAIN, worst airline",
         "what time does boarding start?", "flight delayed 3 hours, no updates", "love the new seats"]

FLASK_APP = textwrap.dedent('''
    # The usual recipe: load the joblib model, clean, predict_proba per request.
    import sys
    import joblib
    from flask import Flask, jsonify, request
    from sentiment_pipeline.inference.artifacts import verify_model
    from sentiment_pipeline.pipeline.text import TextNormalizer, build_stopwords

    verified = verify_model(sys.argv[1])
    model = joblib.load(verified.model_file)
    clean = TextNormalizer(verified.preprocess.cleaning, build_stopwords(verified.preprocess.stopwords))
    classes = verified.card["classes"]
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        text = request.get_json()["text"]
        proba = model.predict_proba([clean(text)])[0]
        best = int(proba.argmax())
        return jsonify(label=classes[best], confidence=float(proba[best]),
                       probabilities=dict(zip(classes, map(float, proba))))

    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
''')

WRK_SCRIPT = textwrap.dedent('''
    local bodies = {%s}
    local i = 0
    request = function()
      i = i %% #bodies + 1
      return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[i])
    end
''')


def run_wrk(url: str, body_key: str, seconds: int, connections: int, workdir: Path) -> dict:
    bodies = ", ".join(json.dumps(json.dumps({body_key: t})) for t in TEXTS)
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT % bodies)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout

    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|Socket errors:.*?timeout)\D*(\d+)", out))
    return {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": latency_ms("50"), "p99_ms": latency_ms("99"), "errors": errors,
            "requests": int(re.search(r"(\d+) requests in", out).group(1)), "raw": out}


def bench_batch_endpoint(url: str, seconds: float, clients: int, size: int = 256) -> tuple[float, int]:
    """Requests of ``size`` texts from ``clients`` concurrent clients (one per worker keeps every
    worker busy): texts per second over ``seconds``."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(size)]
    started = time.perf_counter()

    def client() -> int:
        done = 0
        with httpx.Client(timeout=30) as http:
            while time.perf_counter() - started < seconds:
                http.post(url, json={"texts": texts}).raise_for_status()
                done += size
        return done

    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(lambda _: client(), range(clients)))
    return done / (time.perf_counter() - started), done


def bench_ours(seconds: int, connections: int, workdir: Path, workers: int) -> dict:
    port, database = common.free_port(), workdir / "log.db"
    env = {**os.environ, "SENTIMENT_SERVE_DATABASE_URL": f"sqlite:///{database}", "SENTIMENT_LOG_LEVEL": "warning"}
    url = f"http://127.0.0.1:{port}"
    with common.running_server(common.serve_command(port, workers), f"{url}/healthz", env):
        time.sleep(2 if workers > 1 else 0.5)
        single = run_wrk(f"{url}/v1/predict", "text", seconds, connections, workdir)
        batch_rate, texts_done = bench_batch_endpoint(f"{url}/v1/predict", min(seconds, 10), clients=workers)
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        logged = connection.execute(sqlalchemy.text("select count(*) from predictions")).scalar_one()
    return {**single, "batch_texts_per_second": batch_rate, "logged_rows": logged,
            "answered": single["requests"] + texts_done}


def bench_flask(seconds: int, connections: int, workdir: Path) -> dict:
    port = common.free_port()
    app = workdir / "flask_app.py"
    app.write_text(FLASK_APP)
    with common.running_server([sys.executable, str(app), str(ROOT), str(port)], f"http://127.0.0.1:{port}/",
                               stop_seconds=30):
        return run_wrk(f"http://127.0.0.1:{port}/predict", "text", seconds, connections, workdir)


def bench_predict_command(workdir: Path, sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)) -> list[dict]:
    """The `predict` command on growing CSV files, each in a fresh process: texts/s and peak
    RSS (from the package's profiling hook); flat memory means streaming works."""
    results = []
    for rows in sizes:
        source, target, profile = workdir / f"in-{rows}.csv", workdir / f"out-{rows}.csv", workdir / f"profile-{rows}.jsonl"
        with open(source, "w", encoding="utf-8") as handle:
            handle.write("id,text\n")
            for start in range(0, rows, 100_000):
                block = range(start, min(rows, start + 100_000))
                handle.write("".join(f'{i},"{TEXTS[i % len(TEXTS)]} {i}"\n' for i in block))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sentiment_pipeline", "predict", str(source), str(target),
                        "--id-column", "id", "--project", str(ROOT)], check=True, capture_output=True,
                       env={**os.environ, "SENTIMENT_PIPELINE_PROFILE": str(profile)})
        seconds = time.perf_counter() - started
        record = json.loads(profile.read_text().splitlines()[-1])
        results.append({"rows": rows, "seconds": seconds, "texts_per_second": rows / seconds,
                        "max_rss_mb": record["max_rss_mb"]})
        source.unlink()
        target.unlink()
    return results


def _summary_lines(report: dict) -> tuple[str, str, str]:
    """The ratio, the batch endpoint's rate and the prediction log's count, as printed."""
    ours, flask = report["ours"], report["flask"]
    return (f"Ratio ours / Flask: **{ours['requests_per_second'] / flask['requests_per_second']:.2f}x**",
            f"Batch endpoint (256 texts per request): {ours['batch_texts_per_second']:,.0f} texts/s",
            f"Prediction log: {ours['logged_rows']:,} rows for {ours['answered']:,} predictions answered")


def report_tables(report: dict) -> list[dict]:
    """The two tables main() prints (``common.table``), the lines around them as notes."""
    ours, flask = report["ours"], report["flask"]
    ratio, batch, logged = _summary_lines(report)
    servers = common.table(
        f"Single-text POSTs under wrk -t2 -c{report['connections']} -d{report['seconds']}s",
        ["server", "requests/s", "p50 ms", "p99 ms", "errors"],
        [[name, f"{r['requests_per_second']:,.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", r["errors"]]
         for name, r in (("ours (FastAPI, micro-batching, logging on)", ours), ("Flask + predict_proba per request", flask))],
        note=f"Ours with {report['workers']} uvicorn workers. {ratio}. {batch}. {logged}.")
    predict = common.table(
        "The `predict` command on growing files (a fresh process per size)",
        ["`predict` command, rows", "seconds", "texts/s", "peak RSS MB"],
        [[f"{r['rows']:,}", f"{r['seconds']:.1f}", f"{r['texts_per_second']:,.0f}", f"{r['max_rss_mb']:.0f}"]
         for r in report["predict_command"]])
    return [servers, predict]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of our server")
    parser.add_argument("--predict-sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--output", type=Path, default=Path(tempfile.gettempdir()) / "serve-benchmark.json")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR, help=common.RESULTS_DIR_HELP)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    cpu = common.cpu_model()
    started, params_md5 = common.utc_now(), common.params_md5()
    report = {"machine": {"cpu": cpu, "cores": os.cpu_count()}, "seconds": args.seconds,
              "connections": args.connections, "workers": args.workers, "params_md5": params_md5}
    report["ours"] = bench_ours(args.seconds, args.connections, workdir, args.workers)
    report["flask"] = bench_flask(args.seconds, args.connections, workdir)
    report["predict_command"] = bench_predict_command(workdir, tuple(args.predict_sizes))
    args.output.write_text(json.dumps(report, indent=2))
    servers, predict = tables = report_tables(report)
    ratio, batch, logged = _summary_lines(report)
    print(f"## Serving benchmark\n\n{cpu}, {os.cpu_count()} cores; wrk -t2 -c{args.connections} "
          f"-d{args.seconds}s on the same machine, single-text POSTs\n")
    print(common.markdown_table(servers["columns"], servers["rows"]))
    print(f"\n{ratio}")
    print(f"{batch}\n")
    print(common.markdown_table(predict["columns"], predict["rows"]))
    print(logged)
    shutil.rmtree(workdir, ignore_errors=True)
    common.write_result("serve", tables, args.results_dir, params_md5=params_md5, args=common.script_args(),
                        measured_at=started)


if __name__ == "__main__":
    main()
