"""Command line: one subcommand per DVC stage (``python -m sentiment_pipeline --help``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal, cast

import click
import typer

from sentiment_pipeline.core import kernels, paths, profiling
from sentiment_pipeline.core.errors import PipelineError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Sentiment pipeline stages. DVC calls these; see dvc.yaml.")

ParamsOption = typer.Option(paths.PARAMS, "--params", help="Parameters file.")


def _setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("SENTIMENT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Libraries below us are chatty at INFO.
    for noisy in ("dvclive", "dvc", "matplotlib", "urllib3", "distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _stage_label(stage: Callable[..., None], kwargs: dict) -> str:
    """The subcommand name, plus the family when one was named (``train@xgboost`` for
    ``train --family xgboost``)."""
    context = click.get_current_context(silent=True)
    # click names the context of every command it invokes (info_name is None only for contexts made by hand)
    name = cast(str, context.info_name) if context is not None else stage.__module__.rsplit(".", 1)[-1]
    return f"{name}@{kwargs['family']}" if kwargs.get("family") else name


# Which stage writes what: for the hint when a stage is run by hand before its inputs exist.
_PRODUCERS = (("data/raw", "download"), ("data/processed", "preprocess"), ("data/features", "featurize"),
              ("models/vectorizer", "featurize"), ("models/ensemble", "ensemble"),
              ("metrics/ensemble.json", "ensemble"), ("models/candidates", "train"),
              ("metrics/cv", "train"), ("models/final", "select"),
              ("plots/cv_comparison.json", "select"), ("metrics/baselines.json", "baselines"),
              ("metrics/data.json", "preprocess"))


def missing_input_message(filename: str | None) -> str:
    name = Path(filename or "an input file").as_posix()
    relative = os.path.relpath(name) if os.path.isabs(name) else name
    for prefix, stage in _PRODUCERS:
        if relative == prefix or relative.startswith(prefix + "/"):
            return (f"{relative}: not found; the '{stage}' stage writes it: run "
                    f"'dvc repro {stage}' (or 'dvc repro' for everything) first")
    return f"{relative}: not found"


def _run(stage: Callable[..., None], error_code: int = 1, **kwargs) -> None:
    _setup_logging()
    try:
        # A no-op unless SENTIMENT_PIPELINE_PROFILE names a file (see profiling.py).
        with profiling.profiled(_stage_label(stage, kwargs)):
            stage(**kwargs)
    except PipelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=error_code) from None
    except FileNotFoundError as exc:  # an input of an earlier stage, when run by hand out of order
        typer.echo(f"error: {missing_input_message(exc.filename)}", err=True)
        raise typer.Exit(code=error_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(code=130) from None


@app.command()
def download(params: Path = ParamsOption) -> None:
    """Materialise the configured source as data/raw/reviews.csv (text, label)."""
    from sentiment_pipeline.stages import download as stage

    _run(stage.run, params_file=params)


@app.command()
def preprocess(params: Path = ParamsOption) -> None:
    """Clean, deduplicate and split into data/processed/{train,test}.csv."""
    from sentiment_pipeline.stages import preprocess as stage

    _run(stage.run, params_file=params)


@app.command()
def featurize(params: Path = ParamsOption) -> None:
    """Fit TF-IDF on the training split; write sparse features and the vectorizer."""
    from sentiment_pipeline.stages import featurize as stage

    _run(stage.run, params_file=params)


@app.command()
def train(family: str | None = typer.Option(
              None, help="Only this family (default: every family train.families lists, as dvc repro runs it)."),
          params: Path = ParamsOption) -> None:
    """Grid-search every listed model family with stratified K-fold CV, sharing the cores."""
    from sentiment_pipeline.stages import train as stage

    _run(stage.run, family=family, params_file=params)


@app.command()
def ensemble(params: Path = ParamsOption) -> None:
    """Combine the members' best candidates by soft voting or stacking, scored by CV."""
    from sentiment_pipeline.stages import ensemble as stage

    _run(stage.run, params_file=params)


@app.command()
def select(params: Path = ParamsOption) -> None:
    """Pick the family with the best mean CV macro-F1 and write the final model."""
    from sentiment_pipeline.stages import select as stage

    _run(stage.run, params_file=params)


@app.command()
def evaluate() -> None:
    """Score the final model on the held-out test split (dvclive metrics and plots)."""
    from sentiment_pipeline.stages import evaluate as stage

    _run(stage.run)


@app.command()
def baselines(params: Path = ParamsOption) -> None:
    """Score lexicon baselines (VADER, TextBlob) on the test split's original text."""
    from sentiment_pipeline.stages import baselines as stage

    _run(stage.run, params_file=params)


@app.command()
def report(
    base: str = typer.Option(None, help="Base git revision [default: merge-base of HEAD and main]."),
    output: Path = typer.Option(Path("report.md"), help="Where to write the markdown."),
    wall_time: float = typer.Option(None, help="Pipeline wall time in seconds, for the report."),
    fail_on_regression: bool = typer.Option(
        False, help="Exit 1 when test macro-F1 fell more than report.max_f1_macro_drop."),
    params: Path = ParamsOption,
) -> None:
    """Markdown report of params and metrics changes against a base revision."""
    from sentiment_pipeline.stages import report as stage

    _run(stage.run, base=base, output=output, wall_time=wall_time,
         fail_on_regression=fail_on_regression, params_file=params)


@app.command()
def predict(
    source: Path = typer.Argument(..., help="Texts: .csv, .tsv, .jsonl or .parquet (csv/tsv/jsonl may end in .gz)."),
    target: Path = typer.Argument(..., help="Predictions, in any of the same formats."),
    text_column: str = typer.Option("text", help="The column holding the text."),
    id_column: list[str] = typer.Option([], help="Column(s) copied to the output to join on (repeatable)."),
    on_bad_row: str = typer.Option("fail", help="A row whose text is missing or not text: fail | skip."),
    chunk_rows: int = typer.Option(10_000, min=1, help="Rows read, predicted and written at a time."),
    input_format: str = typer.Option(None, help="csv | tsv | jsonl | parquet [default: from the suffix]."),
    output_format: str = typer.Option(None, help="csv | tsv | jsonl | parquet [default: from the suffix]."),
    project: Path = typer.Option(Path("."), help="Project root holding dvc.lock and models/final."),
) -> None:
    """Predict a file of texts with the pipeline's verified final model (label, confidence, p_<class>)."""
    if on_bad_row not in {"fail", "skip"}:
        raise typer.BadParameter(f"expected fail or skip, got {on_bad_row!r}", param_hint="--on-bad-row")

    def run_batch() -> None:
        from sentiment_pipeline.inference.predictor import Predictor
        from sentiment_pipeline.serving.batch import predict_file

        predict_file(Predictor.load(project), source, target, text_column=text_column,
                     id_columns=id_column, on_bad_row=cast(Literal["fail", "skip"], on_bad_row),  # checked above
                     chunk_rows=chunk_rows,
                     input_format=input_format, output_format=output_format)

    _run(run_batch)


@app.command()
def serve(
    project: Path = typer.Option(Path("."), help="Project root holding params.yaml, dvc.lock and models/final."),
    host: str = typer.Option(None, help="Interface [default: serve.host]."),
    port: int = typer.Option(None, help="Port [default: serve.port]."),
    workers: int = typer.Option(None, help="Worker processes [default: serve.workers]."),
) -> None:
    """Serve the verified final model over HTTP (FastAPI + uvicorn); docs at /docs."""

    def run_server() -> None:
        import uvicorn

        from sentiment_pipeline.core.config import SERVE_ENV_PREFIX, serve_settings
        from sentiment_pipeline.inference.artifacts import verify_model
        from sentiment_pipeline.serving.app import PROJECT_ENV

        # the options as environment variables: the workers uvicorn starts read them too
        overrides = {f"{SERVE_ENV_PREFIX}{k.upper()}": str(v)
                     for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
        os.environ.update(overrides)
        _, settings = serve_settings(project)
        verify_model(project)  # a missing, stale or tampered model stops here, in one line
        os.environ[PROJECT_ENV] = str(project.resolve())
        uvicorn.run("sentiment_pipeline.serving.app:app_from_environment", factory=True,
                    host=settings.host, port=settings.port, workers=settings.workers,
                    # uvicorn annotates int but only hands it to asyncio.wait_for, which takes a float
                    timeout_graceful_shutdown=settings.graceful_shutdown_seconds,  # type: ignore[arg-type]
                    log_level=os.environ.get("SENTIMENT_LOG_LEVEL", "info").lower(), access_log=False)

    _run(run_server)


@app.command("export-feedback")
def export_feedback(
    output: Path = typer.Argument(Path("data/external/feedback.csv"), help="CSV of (text, label)."),
    project: Path = typer.Option(Path("."), help="Project root holding params.yaml (serve.database_url)."),
    database_url: str = typer.Option(None, help="The prediction log [default: serve.database_url]."),
) -> None:
    """Export predictions that received feedback as training data for the download stage."""

    def run_export() -> None:
        from sentiment_pipeline.core.config import serve_settings
        from sentiment_pipeline.predlog.prediction_log import connect
        from sentiment_pipeline.predlog.prediction_log import export_feedback as export

        _, settings = serve_settings(project)
        written, without_text = export(connect(database_url or settings.database_url, project), output)
        logging.getLogger("sentiment_pipeline.feedback").info(
            "%d labelled row(s) written to %s%s", written, output,
            f"; {without_text} left out (text not stored)" if without_text else "")

    _run(run_export)


def _utc(value: str | None, option: str):
    if value is None:
        return None
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected an ISO date or time such as 2026-12-01T08:00, got {value!r}",
                                 param_hint=option) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@app.command()
def monitor(
    project: Path = typer.Option(Path("."), help="Project root holding params.yaml, dvc.lock, models/ and data/."),
    last: int = typer.Option(None, min=1, help="The newest N predictions [default: monitor.window_rows]."),
    since: str = typer.Option(None, help="Window start, ISO time (UTC unless an offset is given)."),
    until: str = typer.Option(None, help="Window end (exclusive), ISO time."),
    database_url: str = typer.Option(None, help="The prediction log [default: serve.database_url]."),
    output_dir: Path = typer.Option(None, help="Where monitor.json and report.html go [default: monitor.output_dir]."),
) -> None:
    """Drift and estimated accuracy of the served model on a window of the prediction log.
    Exit code 0: ok (or too few rows to judge); 1: a check beyond its threshold; 2: an error."""
    window_start, window_end = _utc(since, "--since"), _utc(until, "--until")

    def run_monitor() -> None:
        from sqlalchemy.exc import SQLAlchemyError

        from sentiment_pipeline.core.config import serve_settings
        from sentiment_pipeline.monitoring import monitor as monitoring

        params, settings = serve_settings(project)
        try:
            result, json_file, html_file = monitoring.run(
                project, params.monitor, database_url or settings.database_url,
                monitoring.WindowSpec(last=last, since=window_start, until=window_end), output_dir)
        except (SQLAlchemyError, OSError) as exc:  # the log is unreachable or unreadable
            raise PipelineError(f"the prediction log could not be read: {str(exc).splitlines()[0]}") from None
        logging.getLogger("sentiment_pipeline.monitor").info(
            "%s: %s (%d rows); wrote %s and %s", result["status"], result["message"], result["rows"],
            json_file, html_file)
        code = monitoring.exit_code(result)
        if code:
            raise typer.Exit(code=code)

    # Exit code 1 is the alert, so an error (missing model, unreadable log) exits with 2.
    _run(run_monitor, error_code=2)


@app.command("check-lock")
def check_lock(
    rev: str = typer.Option("HEAD", help="The revision holding the committed results."),
    tolerance: float = typer.Option(None, min=0.0, help="Absolute tolerance for computed values "
                                    "[default: tolerance.ABS_TOLERANCE, 5e-05]."),
) -> None:
    """Fail when dvc.lock differs from REV in code, params or data, or metrics/ and plots/ differ
    beyond the tolerance; one line saying what matched when they agree."""
    from sentiment_pipeline.review import lockcheck
    from sentiment_pipeline.review.tolerance import ABS_TOLERANCE

    def check(**kwargs) -> None:
        typer.echo(lockcheck.check(**kwargs))

    _run(check, root=Path.cwd(), rev=rev, tolerance=ABS_TOLERANCE if tolerance is None else tolerance)


def main() -> None:
    """Console entry point (``sentiment-pipeline``, ``python -m sentiment_pipeline``)."""
    # Before anything loads NumPy: the same numbers on every CPU model (see kernels.py).
    kernels.pin(restart=True)
    app(prog_name="sentiment-pipeline")


if __name__ == "__main__":  # pragma: no cover
    main()
