"""Serving benchmark: our API against the usual Flask app, on this machine, in one run.

    python benchmarks/serve_bench.py [--seconds 30] [--connections 20] [--overload-connections 1000]

Both servers load the same verified model from this project (run `dvc repro` first) and listen
on loopback; wrk (Debian package `wrk`) generates the load on the same cores. Reported per
server: requests/s, p50/p99 latency, errors; for ours also the batch endpoint's and the `predict`
command's texts per second, and the prediction log's row count against the requests answered.

Ours is also measured under overload (``--overload-connections``, wrk with a 10 s timeout): the
share of requests shed (503), and, from probe clients running beside wrk, the latency of
admitted predictions and of ``/healthz``/``/readyz`` (a fresh connection per probe, as a
kubelet's). The same health probe runs during the 20-connection load and during a flood of
256-text requests. Our runs are repeated ``--repeats`` times (20 connections, then overload,
then the flood, in turn) and their medians reported. Markdown to stdout, every number to
--output, the tables to benchmarks/results/serve.json (--results-dir).

The cost of explanations (``"explain": k``, ``--explain-k``, default 5): beside the 20-connection
run, the same wrk load with ``"explain": k`` in every body, and one text at a time on one
keep-alive connection (``--sequential`` requests, plain then explained): what one explained
text costs a client.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
      return wrk.format("POST", nil, {["Content-Type"] = "application/json"%s}, bodies[i])
    end
''')

# Counts responses by status (and 503s without Retry-After) in each wrk thread; done() prints
# them as one JSON line: {"statuses": {"200": n, "503": n}, "503_without_retry_after": n}.
WRK_STATUS_SCRIPT = textwrap.dedent('''
    local threads = {}
    function setup(thread) table.insert(threads, thread) end
    function init(args) statuses = {}; bare503 = 0 end
    function response(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
      if status == 503 and headers["Retry-After"] == nil and headers["retry-after"] == nil then bare503 = bare503 + 1 end
    end
    function done(summary, latency, requests)
      local total, bare = {}, 0
      for _, thread in ipairs(threads) do
        for status, n in pairs(thread:get("statuses")) do total[status] = (total[status] or 0) + n end
        bare = bare + thread:get("bare503")
      end
      local parts = {}
      for status, n in pairs(total) do table.insert(parts, string.format('"%d": %d', status, n)) end
      io.write(string.format('STATUSES {"statuses": {%s}, "503_without_retry_after": %d}\\n',
                             table.concat(parts, ", "), bare))
    end
''')


def run_wrk(url: str, body_key: str, seconds: int, connections: int, workdir: Path, timeout_s: int = 2,
            key: str | None = None, extra: dict | None = None) -> dict:
    """wrk's numbers for POSTs of single texts to ``url`` (with ``key`` as a bearer token if given,
    ``extra`` fields in every body)."""
    bodies = ", ".join(json.dumps(json.dumps({body_key: t, **(extra or {})})) for t in TEXTS)
    auth = f', ["Authorization"] = "Bearer {key}"' if key else ""
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT % (bodies, auth) + WRK_STATUS_SCRIPT)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout

    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|Socket errors:.*?timeout)\D*(\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    counted = re.search(r"^STATUSES (.*)$", out, re.M)
    statuses = json.loads(counted.group(1)) if counted else {"statuses": {}, "503_without_retry_after": 0}
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    shed = statuses["statuses"].get("503", 0)
    return {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": latency_ms("50"), "p99_ms": latency_ms("99"), "max_ms": _duration_ms(
                re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.M).group(1)),
            "errors": errors, "requests": requests, "ok": statuses["statuses"].get("200", 0), "shed": shed,
            "shed_share": shed / requests if requests else 0.0,
            "shed_without_retry_after": statuses["503_without_retry_after"],
            "socket_errors": sum(int(n) for n in socket_errors.groups()) if socket_errors else 0, "raw": out}


def _duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


# ----------------------------------------------------------------------------- probes beside the load
def _http(address: tuple[str, int], request: bytes, connection: socket.socket | None = None,
          timeout: float = 10) -> tuple[int, dict[str, str], socket.socket | None]:
    """Send one request (on ``connection``, else a fresh one) and read the response: its status, its
    headers and the connection, if the server kept it open. Minimal HTTP/1.1, enough for our own
    server: the probes must cost little beside wrk on the same cores."""
    sock = connection or socket.create_connection(address, timeout=timeout)
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    status = int(lines[0].split()[1])
    if headers.get("connection", "").lower() == "close":
        sock.close()
        return status, headers, None
    return status, headers, sock


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()


def _post(path: str, body: dict, key: str | None = None) -> bytes:
    data = json.dumps(body).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def health_probe(address: tuple[str, int], stop: threading.Event, samples: list, interval: float = 0.1) -> None:
    """``/healthz`` and ``/readyz`` in turn every ``interval`` seconds, a fresh connection each (as
    a kubelet probes): (status, milliseconds including the connect) into ``samples``."""
    paths = ("/healthz", "/readyz")
    i = 0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            status, _, _ = _http(address, _get(paths[i % 2]))
        except OSError:
            status = 0
        samples.append((status, (time.perf_counter() - started) * 1000))
        i += 1
        stop.wait(interval)


def predict_probe(address: tuple[str, int], stop: threading.Event, samples: list, pause: float = 0.02,
                  key: str | None = None) -> None:
    """Single-text predictions on one keep-alive connection, one every ``pause`` seconds or so, as
    a client that honours Retry-After (after a 503 it waits that long): (status, milliseconds) into
    ``samples``; what admitted requests wait under wrk's load."""
    connection, i = None, 0
    while not stop.is_set():
        request = _post("/v1/predict", {"text": TEXTS[i % len(TEXTS)]}, key)
        started = time.perf_counter()
        headers: dict[str, str] = {}
        try:
            status, headers, connection = _http(address, request, connection)
        except OSError:
            status, connection = 0, None
        samples.append((status, (time.perf_counter() - started) * 1000))
        i += 1
        stop.wait(float(headers.get("retry-after", pause)) if status == 503 else pause)


@contextmanager
def probing(address: tuple[str, int], predict_clients: int = 0, health: bool = True,
            delay: float = 1.0, key: str | None = None) -> Iterator[dict[str, list]]:
    """Probe threads running (after ``delay`` s: the load first builds up) while the block runs;
    their samples by kind once they stopped (a probe in flight finishes, up to its 10 s timeout:
    a slow answer is what is measured)."""
    stop, samples = threading.Event(), {"health": [], "predict": []}
    targets: list[tuple[Callable, list, dict]] = [(health_probe, samples["health"], {})] if health else []
    targets += [(predict_probe, samples["predict"], {"key": key})] * predict_clients
    threads = [threading.Thread(target=target, args=(address, stop, into), kwargs=kwargs, daemon=True)
               for target, into, kwargs in targets]

    def start() -> None:
        if not stop.wait(delay):
            for thread in threads:
                thread.start()

    starter = threading.Thread(target=start, daemon=True)
    starter.start()
    try:
        yield samples
    finally:
        stop.set()
        starter.join()
        for thread in threads:
            if thread.ident is not None:
                thread.join(timeout=15)


def sequential(address: tuple[str, int], requests: int, key: str | None = None, extra: dict | None = None) -> dict:
    """``requests`` single-text predictions one after another on one keep-alive connection (a
    client waiting for each answer): latency percentiles and requests/s."""
    connection, times, failed = None, [], 0
    started = time.perf_counter()
    for i in range(requests):
        request = _post("/v1/predict", {"text": TEXTS[i % len(TEXTS)], **(extra or {})}, key)
        sent = time.perf_counter()
        status, _, connection = _http(address, request, connection)
        times.append((time.perf_counter() - sent) * 1000)
        failed += status != 200
    if connection is not None:
        connection.close()
    return {"requests_per_second": requests / (time.perf_counter() - started), "p50_ms": percentile(times, 50),
            "p99_ms": percentile(times, 99), "errors": failed}


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def summarize_probes(samples: dict[str, list]) -> dict:
    """Latency percentiles of the health probes (all of them: a failed probe counts as what it
    took) and of the admitted (200) probe predictions; the probes' share of 503s."""
    health = [ms for _, ms in samples["health"]]
    admitted = [ms for status, ms in samples["predict"] if status == 200]
    predictions = len(samples["predict"])
    return {"health_probes": len(health), "health_failed": sum(1 for s, _ in samples["health"] if s != 200),
            "health_p50_ms": percentile(health, 50), "health_p99_ms": percentile(health, 99),
            "health_max_ms": max(health, default=None),
            "probe_predictions": predictions, "admitted_p50_ms": percentile(admitted, 50),
            "admitted_p99_ms": percentile(admitted, 99),
            "probe_shed_share": (sum(1 for s, _ in samples["predict"] if s == 503) / predictions) if predictions else None}


def bench_batch_endpoint(url: str, seconds: float, clients: int, size: int = 256,
                         key: str | None = None) -> tuple[float, int]:
    """Requests of ``size`` texts from ``clients`` concurrent clients (one per worker keeps every
    worker busy): texts per second over ``seconds``."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(size)]
    started = time.perf_counter()

    def client() -> int:
        done = 0
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"} if key else None) as http:
            while time.perf_counter() - started < seconds:
                response = http.post(url, json={"texts": texts})
                if response.status_code == 503:  # shed: a client waits as long as Retry-After says
                    time.sleep(float(response.headers.get("retry-after", 1)))
                    continue
                response.raise_for_status()
                done += size
        return done

    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(lambda _: client(), range(clients)))
    return done / (time.perf_counter() - started), done


def bench_ours(seconds: int, connections: int, workdir: Path, workers: int, overload_connections: int = 1000,
               repeats: int = 1, flood_clients: int = 8, project: Path = ROOT, auth: bool = True,
               explain_k: int = 5, sequential_requests: int = 500) -> dict:
    """Our server under ``connections``, then ``overload_connections`` (wrk), then a flood of
    256-text requests from ``flood_clients`` clients, ``repeats`` times in turn; the medians of each
    number over the repeats, every run under ``runs``. With ``auth`` every request carries an API
    key (from a key store of its own, scope predict, a rate limit far above what is reached), as in
    production; without it the server runs with ``serve.auth: none``."""
    port, database = common.free_port(), workdir / "log.db"
    # the prediction log, its spool and the key store in the work directory: nothing shared with
    # another server of the project
    env = {**os.environ, "SENTIMENT_SERVE_DATABASE_URL": f"sqlite:///{database}", "SENTIMENT_LOG_LEVEL": "warning",
           "SENTIMENT_SERVE_SPOOL_DIR": str(workdir / "spool"), "SENTIMENT_SERVE_AUTH": "keys" if auth else "none",
           "SENTIMENT_SERVE_KEYS_FILE": str(workdir / "api_keys.json")}
    key = None
    if auth:
        from sentiment_pipeline.serving.auth import create_key

        _, key = create_key(workdir / "api_keys.json", "serve benchmark", ["predict"],
                            rate_limit_per_second=1e9, rate_limit_burst=10**9)
    url, address = f"http://127.0.0.1:{port}", ("127.0.0.1", port)
    runs: list[dict] = []
    answered = 0
    with common.running_server(common.serve_command(port, workers, project), f"{url}/healthz", env):
        time.sleep(2 if workers > 1 else 0.5)
        for _ in range(repeats):
            with probing(address) as samples:
                single = run_wrk(f"{url}/v1/predict", "text", seconds, connections, workdir, key=key)
            run = {"single": {**single, **summarize_probes(samples)}}
            answered += single["ok"] + sum(1 for s, _ in samples["predict"] if s == 200)
            if explain_k:
                explained = run_wrk(f"{url}/v1/predict", "text", seconds, connections, workdir, key=key,
                                    extra={"explain": explain_k})
                one_plain = sequential(address, sequential_requests, key)
                one_explained = sequential(address, sequential_requests, key, extra={"explain": explain_k})
                run["explained"] = {**explained, **{f"one_plain_{k}": v for k, v in one_plain.items()},
                                    **{f"one_explained_{k}": v for k, v in one_explained.items()}}
                answered += explained["ok"] + 2 * sequential_requests - one_plain["errors"] - one_explained["errors"]
            if overload_connections:
                with probing(address, predict_clients=4, key=key) as samples:
                    overload = run_wrk(f"{url}/v1/predict", "text", seconds, overload_connections, workdir,
                                       timeout_s=10, key=key)
                run["overload"] = {**overload, **summarize_probes(samples)}
                answered += overload["ok"] + sum(1 for s, _ in samples["predict"] if s == 200)
            if flood_clients:
                with probing(address) as samples:
                    flood_rate, flood_done = bench_batch_endpoint(f"{url}/v1/predict", min(seconds, 10), flood_clients,
                                                                  key=key)
                run["flood"] = {"texts_per_second": flood_rate, **summarize_probes(samples)}
                answered += flood_done
            runs.append(run)
        batch_rate, texts_done = bench_batch_endpoint(f"{url}/v1/predict", min(seconds, 10), clients=workers, key=key)
        answered += texts_done
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        logged = connection.execute(sqlalchemy.text("select count(*) from predictions")).scalar_one()

    def medians(kind: str) -> dict:
        keys = [k for k, v in runs[0][kind].items() if v is None or (isinstance(v, int | float) and not isinstance(v, bool))]
        return {k: common.median(run[kind][k] for run in runs) for k in keys}

    result = {**medians("single"), "batch_texts_per_second": batch_rate, "logged_rows": logged, "answered": answered,
              "repeats": repeats, "runs": [{kind: {k: v for k, v in numbers.items() if k != "raw"}
                                            for kind, numbers in run.items()} for run in runs]}
    if overload_connections:
        result["overload"] = {"connections": overload_connections, **medians("overload")}
    if flood_clients:
        result["flood"] = {"clients": flood_clients, **medians("flood")}
    if explain_k:
        result["explained"] = {"k": explain_k, "sequential_requests": sequential_requests, **medians("explained")}
    return result


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
    ours, flask = report["ours"], report.get("flask")
    ratio = (f"Ratio ours / Flask: **{ours['requests_per_second'] / flask['requests_per_second']:.2f}x**"
             if flask else "Flask app not measured")
    return (ratio, f"Batch endpoint (256 texts per request): {ours['batch_texts_per_second']:,.0f} texts/s",
            f"Prediction log: {ours['logged_rows']:,} rows for {ours['answered']:,} predictions answered")


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def overload_table(report: dict) -> dict | None:
    """Our server at ``connections``, at ``overload.connections`` and under the 256-text flood: what
    was shed, what admitted requests waited, what the health probes waited (None when the run
    measured no overload)."""
    ours = report["ours"]
    overload, flood = ours.get("overload"), ours.get("flood")
    if overload is None:
        return None
    seconds = report["seconds"]
    rows = [[f"{report['connections']} connections", f"{ours['requests_per_second']:,.0f}",
             f"{ours.get('shed_share', 0):.1%}", _ms(ours["p50_ms"]), _ms(ours["p99_ms"]),
             _ms(ours.get("health_p50_ms")), _ms(ours.get("health_p99_ms")), _ms(ours.get("health_max_ms"))],
            [f"{overload['connections']:,} connections", f"{overload['requests_per_second']:,.0f}",
             f"{overload['shed_share']:.1%}", _ms(overload["admitted_p50_ms"]), _ms(overload["admitted_p99_ms"]),
             _ms(overload["health_p50_ms"]), _ms(overload["health_p99_ms"]), _ms(overload["health_max_ms"])]]
    if flood is not None:
        rows.append([f"256-text requests, {flood['clients']} clients", f"{flood['texts_per_second']:,.0f} texts/s",
                     "–", "–", "–", _ms(flood["health_p50_ms"]), _ms(flood["health_p99_ms"]),
                     _ms(flood["health_max_ms"])])
    return common.table(
        f"Ours under load and overload: single-text POSTs under wrk -t2 -d{seconds}s, health probes beside",
        ["load", "requests/s", "shed (503)", "admitted p50 ms", "admitted p99 ms", "/healthz p50 ms",
         "/healthz p99 ms", "/healthz max ms"], rows,
        note=(f"Medians of {ours.get('repeats', 1)} runs of each load in turn, one server with {report['workers']} "
              f"workers, wrk, probes and server sharing the machine's cores. Admitted latency: wrk's at "
              f"{report['connections']} connections; at {overload['connections']:,}, four probe clients' single-text "
              f"requests answered 200 (wrk's own percentiles mix in the fast 503s). /healthz: /healthz and /readyz in "
              f"turn every 0.1 s on a fresh connection each, connect included."
              + (f" 503s without Retry-After: {overload.get('shed_without_retry_after', 0):.0f}." if overload["shed"] else "")))


def explained_table(report: dict) -> dict | None:
    """Plain against explained single-text requests: under wrk's load, and one at a time."""
    ours = report["ours"]
    explained = ours.get("explained")
    if explained is None:
        return None
    k, n = explained["k"], explained["sequential_requests"]

    def row(name: str, numbers: dict, prefix: str = "") -> list:
        return [name, f"{numbers[prefix + 'requests_per_second']:,.0f}", _ms(numbers[prefix + "p50_ms"]),
                _ms(numbers[prefix + "p99_ms"]), round(numbers[prefix + "errors"])]

    return common.table(
        f'The cost of explanations ("explain": {k}): single-text POSTs, plain and explained',
        ["requests", "requests/s", "p50 ms", "p99 ms", "errors"],
        [row(f"plain, wrk -c{report['connections']}", ours), row(f"explained, wrk -c{report['connections']}", explained),
         row(f"plain, one at a time ({n})", explained, "one_plain_"),
         row(f"explained, one at a time ({n})", explained, "one_explained_")],
        note=(f"Medians of {ours.get('repeats', 1)} runs. wrk -t2 -d{report['seconds']}s with the same five tweets, "
              f'"explain": {k} in every body of the second row; then {n} requests one after another on one '
              f"keep-alive connection, latency as the client sees it. An explained text is predicted once per "
              f"distinct word (docs/serving.md#explanations), off the micro-batcher, on one thread per worker."))


def report_tables(report: dict) -> list[dict]:
    """The tables main() prints (``common.table``), the lines around them as notes."""
    ours, flask = report["ours"], report.get("flask")
    ratio, batch, logged = _summary_lines(report)
    servers = [("ours (FastAPI, micro-batching, logging on)", ours)]
    if flask:
        servers.append(("Flask + predict_proba per request", flask))
    single = common.table(
        f"Single-text POSTs under wrk -t2 -c{report['connections']} -d{report['seconds']}s",
        ["server", "requests/s", "p50 ms", "p99 ms", "errors"],
        [[name, f"{r['requests_per_second']:,.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", round(r["errors"])]
         for name, r in servers],
        note=(f"Ours with {report['workers']} uvicorn workers, "
              + ("an API key on every request (serve.auth: keys)" if report.get("auth", False) else "serve.auth: none")
              + f", the prediction log's spool on. {ratio}. {batch}. {logged}."))
    tables = [single]
    explained = explained_table(report)
    if explained is not None:
        tables.append(explained)
    overload = overload_table(report)
    if overload is not None:
        tables.append(overload)
    if report.get("predict_command"):
        tables.append(common.table(
            "The `predict` command on growing files (a fresh process per size)",
            ["`predict` command, rows", "seconds", "texts/s", "peak RSS MB"],
            [[f"{r['rows']:,}", f"{r['seconds']:.1f}", f"{r['texts_per_second']:,.0f}", f"{r['max_rss_mb']:.0f}"]
             for r in report["predict_command"]]))
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--overload-connections", type=int, default=1000,
                        help="wrk's connections for the overload run (0: no overload run)")
    parser.add_argument("--flood-clients", type=int, default=8,
                        help="clients sending 256-text requests while /healthz is probed (0: no flood)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each load on our server (medians reported)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of our server")
    parser.add_argument("--skip-flask", action="store_true", help="measure only our server")
    parser.add_argument("--no-auth", action="store_true",
                        help="run our server with serve.auth: none (default: every request carries an API key)")
    parser.add_argument("--project", type=Path, default=ROOT, help="the project whose model our server serves")
    parser.add_argument("--explain-k", type=int, default=5,
                        help='"explain": k of the explained runs (0: no explained runs)')
    parser.add_argument("--sequential", type=int, default=500,
                        help="requests of the one-at-a-time runs, plain and explained")
    parser.add_argument("--predict-sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000],
                        help="rows of the predict command's files (none: not measured)")
    parser.add_argument("--output", type=Path, default=Path(tempfile.gettempdir()) / "serve-benchmark.json")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR, help=common.RESULTS_DIR_HELP)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    if args.overload_connections:
        # wrk and the server each hold a descriptor per connection
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 2 * args.overload_connections + 1024
        if soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    workdir = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    cpu = common.cpu_model()
    started, params_md5 = common.utc_now(), common.params_md5()
    report: dict = {"machine": {"cpu": cpu, "cores": os.cpu_count()}, "seconds": args.seconds,
                    "connections": args.connections, "workers": args.workers, "params_md5": params_md5,
                    "auth": not args.no_auth}
    report["ours"] = bench_ours(args.seconds, args.connections, workdir, args.workers, args.overload_connections,
                                args.repeats, args.flood_clients, args.project, auth=not args.no_auth,
                                explain_k=args.explain_k, sequential_requests=args.sequential)
    if not args.skip_flask:
        report["flask"] = bench_flask(args.seconds, args.connections, workdir)
    report["predict_command"] = bench_predict_command(workdir, tuple(args.predict_sizes))
    args.output.write_text(json.dumps(report, indent=2))
    tables = report_tables(report)
    ratio, batch, logged = _summary_lines(report)
    print(f"## Serving benchmark\n\n{cpu}, {os.cpu_count()} cores; wrk -t2 -c{args.connections} "
          f"-d{args.seconds}s on the same machine, single-text POSTs\n")
    for entry in tables:
        print(f"### {entry['title']}\n")
        print(common.markdown_table(entry["columns"], entry["rows"]))
        print(f"\n{entry['note']}\n" if entry["note"] else "")
    shutil.rmtree(workdir, ignore_errors=True)
    common.write_result("serve", tables, args.results_dir, params_md5=params_md5, args=common.script_args(),
                        measured_at=started)


if __name__ == "__main__":
    main()
