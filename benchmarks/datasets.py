"""The pipeline on other public sentiment datasets, each got from a package registry.

    python benchmarks/datasets.py                 # every dataset below
    python benchmarks/datasets.py --only uci_sentences

Each dataset is fetched from a package registry into a cache (``npm pack`` / ``pip download``;
nothing else is reached), written as a CSV, and run through the whole pipeline with
``download.source: file`` in a snapshot of this project (``dvc repro``, the project's params
otherwise unchanged). Reported: rows, classes, the family selected by CV, its CV macro-F1 and
the held-out test scores, and the lexicon baselines on the same split. Markdown to stdout, every
number to --output, the table to benchmarks/results/datasets.json (--results-dir).

- ``uci_sentences``: UCI Sentiment Labelled Sentences (Kotzias et al. 2015; Amazon, IMDb and
  Yelp sentences, 1,000 each, positive/negative; CC BY 4.0), as shipped in the test fixtures of
  the npm package ``sentiment@5.0.2`` (MIT).
- ``vader_tweets``: the 4,200 tweets of VADER's ground truth (Hutto & Gilbert 2014; mean of ~20
  human ratings in [-4, 4], here negative <= -0.5 < neutral < 0.5 <= positive), in the sdist of
  ``vaderSentiment==3.3.2`` (MIT). VADER's lexicon was built with these raters, so the VADER
  baseline on it is optimistic.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pandas as pd
import typer

if __package__:  # imported as benchmarks.datasets
    from . import common
else:  # run as python benchmarks/datasets.py: this folder is first on sys.path
    import common

log = logging.getLogger("datasets")
ROOT = common.ROOT
CACHE = Path(tempfile.gettempdir()) / "sentiment-datasets"


def _npm_pack(spec: str) -> Path:
    target = CACHE / "npm"
    target.mkdir(parents=True, exist_ok=True)
    name = spec.replace("@", "-") + ".tgz"
    if not (target / name).exists():
        subprocess.run(["npm", "pack", spec, "--silent"], cwd=target, check=True, capture_output=True)
    return target / name


def _pip_sdist(name: str, version: str) -> Path:
    """The source distribution, by ``pip download`` (this interpreter's pip, else pip3 on PATH:
    a uv-made .venv has none), from the package index pip is configured with."""
    import shutil

    target = CACHE / "sdist"
    target.mkdir(parents=True, exist_ok=True)
    found = list(target.glob(f"{name}-{version}.tar.gz"))
    if not found:
        has_pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0
        pip = [sys.executable, "-m", "pip"] if has_pip else [shutil.which("pip3") or "pip"]
        subprocess.run([*pip, "download", "--quiet", "--no-deps", "--no-binary", ":all:", f"{name}=={version}",
                        "-d", str(target)], check=True, capture_output=True)
        found = list(target.glob(f"{name}-{version}.tar.gz"))
    return found[0]


def uci_sentences() -> pd.DataFrame:
    rows = []
    with tarfile.open(_npm_pack("sentiment@5.0.2")) as archive:
        for source in ("amazon", "imdb", "yelp"):
            for item in json.load(archive.extractfile(f"package/test/fixtures/{source}.json")):
                if item.get("class") in (0, 1) and str(item.get("text", "")).strip():
                    rows.append((item["text"], "positive" if item["class"] == 1 else "negative"))
    return pd.DataFrame(rows, columns=["text", "label"])


def vader_tweets(low: float = -0.5, high: float = 0.5) -> pd.DataFrame:
    with tarfile.open(_pip_sdist("vaderSentiment", "3.3.2")) as outer:
        inner_bytes = outer.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        text = inner.extractfile("hutto_ICWSM_2014/tweets_GroundTruth.txt").read().decode("utf-8")
    rows = []
    for line in text.splitlines():
        if line.strip():
            _, score, tweet = line.split("\t", 2)
            value = float(score)
            rows.append((tweet, "negative" if value <= low else "positive" if value >= high else "neutral"))
    return pd.DataFrame(rows, columns=["text", "label"])


DATASETS = {"uci_sentences": uci_sentences, "vader_tweets": vader_tweets}


def run_dataset(name: str, frame: pd.DataFrame, scratch: Path) -> dict:
    from sentiment_pipeline.core.files import write_csv

    project = scratch / name
    project.mkdir()
    common.snapshot_project(ROOT, project)
    source = Path("data/external") / f"{name}.csv"
    write_csv(frame, project / source)
    params = common.use_file_source(common.read_params(project / "params.yaml"), source)
    common.write_params(params, project / "params.yaml")
    env = common.subprocess_env(project)
    log.info("%s: %d rows, dvc repro", name, len(frame))
    seconds = common.run_logged([sys.executable, "-m", "dvc", "repro"], project, env, project / "repro.log")
    read = lambda path: json.loads((project / path).read_text())  # noqa: E731
    test, selection, baselines, data = (read("metrics/test.json"), read("metrics/selection.json"),
                                        read("metrics/baselines.json"), read("metrics/data.json"))
    return {"dataset": name, "rows": len(frame), "kept": data["rows_out"],
            "classes": data["class_counts"]["deduplicated"], "family": selection["family"],
            "cv_f1_macro": selection["cv_f1_macro_mean"], "cv_f1_macro_std": selection["cv_f1_macro_std"],
            "accuracy": test["accuracy"], "f1_macro": test["f1_macro"], "seconds": seconds,
            "baselines": {k: {"accuracy": v.get("accuracy"), "f1_macro": v.get("f1_macro")}
                          for k, v in baselines.items() if isinstance(v, dict)}}


DEFAULT_OUTPUT = Path(tempfile.gettempdir()) / "datasets-benchmark.json"
ONLY_HELP = f"Datasets to run (default all: {', '.join(DATASETS)})"


def report_table(results: list[dict]) -> dict:
    """One row per dataset (``common.table``), as :func:`render` prints it."""
    rows = []
    for r in results:
        base = r["baselines"]

        def cell(k: str, base: dict = base) -> str:
            return (f"{base[k]['accuracy']:.3f} / {base[k]['f1_macro']:.3f}"
                    if k in base and base[k]["accuracy"] is not None else "—")
        classes = ", ".join(f"{k} {v}" for k, v in r["classes"].items())
        rows.append([r["dataset"], f"{r['rows']:,} ({r['kept']:,})", classes, r["family"],
                     f"{r['cv_f1_macro']:.4f} ± {r['cv_f1_macro_std']:.4f}", f"{r['accuracy']:.4f}",
                     f"{r['f1_macro']:.4f}", cell("vader"), cell("textblob"), f"{r['seconds']:.0f}"])
    return common.table(
        "Other datasets", ["dataset", "rows (kept)", "classes", "selected", "CV macro-F1", "test accuracy",
                           "test macro-F1", "VADER acc / F1", "TextBlob acc / F1", "dvc repro s"], rows,
        note="Each dataset run through the whole pipeline (`download.source: file`, the project's params otherwise).")


def render(results: list[dict]) -> str:
    result = report_table(results)
    return common.markdown_table(result["columns"], result["rows"]) + "\n"


def main(only: list[str] = typer.Option(None, help=ONLY_HELP),
         output: Path = typer.Option(DEFAULT_OUTPUT),
         results_dir: Path = typer.Option(common.RESULTS_DIR, help=common.RESULTS_DIR_HELP)) -> None:
    common.setup_logging("INFO", fmt="%(asctime)s %(message)s")
    measured_at, params_md5 = common.utc_now(), common.params_md5(ROOT / "params.yaml")
    names = only or list(DATASETS)
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        raise typer.BadParameter(f"unknown dataset(s) {unknown}; expected {sorted(DATASETS)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="sentiment-datasets-") as scratch:
        for name in names:
            results.append(run_dataset(name, DATASETS[name](), Path(scratch)))
    output.write_text(json.dumps(results, indent=2))
    typer.echo(render(results))
    common.write_result("datasets", [report_table(results)], results_dir, params_md5=params_md5,
                        args=common.script_args(), measured_at=measured_at)


if __name__ == "__main__":
    typer.run(main)
