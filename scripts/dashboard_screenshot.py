"""Regenerate docs/dashboard.png from the current default model (``make docs-screenshot``).

Serves ``models/final`` in-process on a loopback port with a throw-away prediction log, sends
it the test split's texts (shuffled), runs ``monitor`` on that traffic, then photographs ``/dashboard`` in
headless Chromium (Debian: chromium, chromium-driver) after typing a text into its box.
Needs a finished ``dvc repro``; writes nothing but the picture.
"""

from __future__ import annotations

import logging
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import typer
import uvicorn

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import serve_settings
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.serving.app import create_app

log = logging.getLogger("dashboard_screenshot")
ROOT = Path(__file__).resolve().parent.parent
TYPED = "@united you lost my bag again, worst service ever"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_logged(database: str, rows: int, seconds: float = 60) -> None:
    """The server answers before its log reaches the database: wait for every row."""
    from sqlalchemy import create_engine, func, select

    from sentiment_pipeline.predlog.prediction_log import predictions

    engine = create_engine(database)
    deadline = time.monotonic() + seconds
    try:
        while True:
            with engine.connect() as connection:
                if connection.execute(select(func.count()).select_from(predictions)).scalar_one() >= rows:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the prediction log did not reach {rows} rows in {seconds} s")
            time.sleep(0.2)
    finally:
        engine.dispose()


def chromium(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        raise typer.BadParameter("headless Chromium not found: install the Debian packages chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def main(output: Path = typer.Option(ROOT / "docs" / "dashboard.png", help="Where the PNG goes."),
         width: int = typer.Option(1400), height: int = typer.Option(2200)) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if not (ROOT / paths.FINAL_MODEL).is_file():
        raise typer.BadParameter(f"{paths.FINAL_MODEL} not found: run `make repro` first")
    with tempfile.TemporaryDirectory() as scratch:
        database = f"sqlite:///{Path(scratch) / 'predictions.db'}"
        params, settings = serve_settings(ROOT)
        settings = settings.model_copy(update={"database_url": database})
        monitor_dir = Path(scratch) / "monitor"
        app = create_app(settings, lambda: Predictor.load(ROOT), ROOT, monitor_file=monitor_dir / "monitor.json")
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not server.started:
                if time.monotonic() > deadline or not thread.is_alive():
                    raise RuntimeError("the in-process server did not start")
                time.sleep(0.1)
            texts = pd.read_csv(ROOT / paths.TEST_FILE, dtype=str, keep_default_na=False)["raw"].tolist()
            # in a seeded random order: the file keeps the source's order (grouped by airline), so
            # its newest rows, monitor's window, would not look like the training data
            random.Random(0).shuffle(texts)
            step = settings.max_texts_per_request
            with httpx.Client(base_url=url, timeout=30) as http:
                for start in range(0, len(texts), step):
                    http.post("/v1/predict", json={"texts": texts[start:start + step]}).raise_for_status()
            log.info("sent %d test-split texts; running monitor", len(texts))
            wait_until_logged(database, len(texts))
            monitor = subprocess.run([sys.executable, "-m", "sentiment_pipeline", "monitor", "--project", str(ROOT),
                                      "--database-url", database, "--output-dir", str(monitor_dir)],
                                     capture_output=True, text=True)
            if monitor.returncode not in (0, 1):  # 1 is drift, still a picture worth taking
                raise RuntimeError(f"monitor failed: {monitor.stderr.strip().splitlines()[-1:]}")
            browser = chromium(width, height)
            try:
                from selenium.webdriver.common.by import By
                from selenium.webdriver.support import expected_conditions as ready
                from selenium.webdriver.support.ui import WebDriverWait

                browser.get(f"{url}/dashboard")
                browser.find_element(By.ID, "predict-text").send_keys(TYPED)
                browser.find_element(By.ID, "predict-button").click()
                WebDriverWait(browser, 20).until(ready.visibility_of_element_located((By.ID, "predicted-label")))
                output.parent.mkdir(parents=True, exist_ok=True)
                if not browser.save_screenshot(str(output)):
                    raise RuntimeError(f"{output}: the browser could not write the screenshot")
            finally:
                browser.quit()
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    log.info("wrote %s", output)


if __name__ == "__main__":
    typer.run(main)
