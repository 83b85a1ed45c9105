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
DatabaseUrlOption = typer.Option(None, help="The prediction log (default: serve.database_url).")


def _setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("SENTIMENT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Libraries below us are chatty at INFO.
    for noisy in ("dvclive", "dvc", "matplotlib", "urllib3", "distributed", "alembic"):
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
    base: str = typer.Option(None, help="Base git revision (default: merge-base of HEAD and main)."),
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
    input_format: str = typer.Option(None, help="csv | tsv | jsonl | parquet (default: from the suffix)."),
    output_format: str = typer.Option(None, help="csv | tsv | jsonl | parquet (default: from the suffix)."),
    project: Path = typer.Option(Path("."), help="Project root holding dvc.lock and models/final."),
    explain: int = typer.Option(None, min=1, max=20, help=(
        "Add an 'explanation' column: each text's top-k words with their contributions, as JSON text "
        "(as the API's explain; the words examined: serve.explain_max_words).")),
) -> None:
    """Predict a file of texts with the pipeline's verified final model (label, confidence, p_<class>)."""
    if on_bad_row not in {"fail", "skip"}:
        raise typer.BadParameter(f"expected fail or skip, got {on_bad_row!r}", param_hint="--on-bad-row")

    def run_batch() -> None:
        from sentiment_pipeline.core.config import serve_settings
        from sentiment_pipeline.inference.predictor import Predictor
        from sentiment_pipeline.serving.batch import predict_file

        max_words = serve_settings(project)[1].explain_max_words if explain is not None else 64  # as served
        predict_file(Predictor.load(project), source, target, text_column=text_column,
                     id_columns=id_column, on_bad_row=cast(Literal["fail", "skip"], on_bad_row),  # checked above
                     chunk_rows=chunk_rows,
                     input_format=input_format, output_format=output_format,
                     explain=explain, explain_max_words=max_words)

    _run(run_batch)


@app.command()
def serve(
    project: Path = typer.Option(Path("."), help="Project root holding params.yaml, dvc.lock and models/final."),
    host: str = typer.Option(None, help="Interface (default: serve.host)."),
    port: int = typer.Option(None, help="Port (default: serve.port)."),
    workers: int = typer.Option(None, help="Worker processes (default: serve.workers)."),
) -> None:
    """Serve the verified final model over HTTP (FastAPI + uvicorn); docs at /docs."""

    def run_server() -> None:
        from sentiment_pipeline.core.config import SERVE_ENV_PREFIX, serve_settings
        from sentiment_pipeline.inference.artifacts import verify_model
        from sentiment_pipeline.predlog.access import check_database
        from sentiment_pipeline.serving import server
        from sentiment_pipeline.serving.app import PROJECT_ENV
        from sentiment_pipeline.serving.auth import check_auth

        # the options as environment variables: the workers uvicorn starts read them too
        overrides = {f"{SERVE_ENV_PREFIX}{k.upper()}": str(v)
                     for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
        os.environ.update(overrides)
        _, settings = serve_settings(project)
        verify_model(project)  # a missing, stale or tampered model stops here, in one line
        check_auth(settings, project)  # beyond loopback without API keys: refused, in one line
        check_database(settings.database_url, project)  # so does a log that cannot be opened or created
        os.environ[PROJECT_ENV] = str(project.resolve())
        server.run(settings, log_level=os.environ.get("SENTIMENT_LOG_LEVEL", "info").lower())

    _run(run_server)


@app.command("export-feedback")
def export_feedback(
    output: Path = typer.Argument(Path("data/external/feedback.csv"), help="CSV of (text, label)."),
    project: Path = typer.Option(Path("."), help="Project root holding params.yaml (serve.database_url)."),
    database_url: str = DatabaseUrlOption,
    key_id: list[str] = typer.Option([], help="Keep only labels written with this API key id (repeatable)."),
    scope: list[str] = typer.Option([], help="Keep only labels written with keys holding this scope, per the "
                                             "key store serve.keys_file (repeatable; adds to --key-id)."),
) -> None:
    """Export predictions that received feedback as training data for the download stage; with
    --key-id/--scope only the labels written with those keys (labels without a key are left out)."""

    def run_export() -> None:
        from sqlalchemy.exc import SQLAlchemyError

        from sentiment_pipeline.core.config import serve_settings
        from sentiment_pipeline.predlog.access import open_reader, read_failure
        from sentiment_pipeline.predlog.prediction_log import export_feedback as export

        _, settings = serve_settings(project)
        keep = _feedback_keys(settings, project, key_id, scope)
        url = database_url or settings.database_url
        if output.is_dir():  # atomic_path would replace the whole directory
            raise PipelineError(f"{output}: is a directory; expected a file name for the feedback CSV")
        engine = open_reader(url, project)  # SQLite read-only: a mistyped path creates nothing
        try:
            written, without_text = export(engine, output, keep)
        except SQLAlchemyError as exc:
            raise read_failure(url, exc) from None
        except OSError as exc:  # reading is done: the output cannot be written
            raise PipelineError(f"{output}: cannot write the feedback CSV: {exc.strerror or exc}") from None
        finally:
            engine.dispose()
        logging.getLogger("sentiment_pipeline.feedback").info(
            "%d labelled row(s) written to %s%s", written, output,
            f"; {without_text} left out (text not stored)" if without_text else "")

    _run(run_export)


def _feedback_keys(settings, project: Path, key_ids: list[str], scopes: list[str]) -> set[str] | None:
    """The key ids whose feedback export-feedback keeps: --key-id plus the keys holding --scope;
    None (every label) when neither is given."""
    if not key_ids and not scopes:
        return None
    from sentiment_pipeline.serving.auth import SCOPES, key_ids_with_scopes, keys_file

    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise typer.BadParameter(f"{unknown[0]!r} is not a scope; expected one of {', '.join(SCOPES)}",
                                 param_hint="--scope")
    keep = set(key_ids)
    if scopes:
        path = keys_file(settings, project)
        holders = key_ids_with_scopes(path, scopes)
        logging.getLogger("sentiment_pipeline.feedback").info(
            "keys with scope %s in %s: %s", "/".join(scopes), path, ", ".join(holders) or "none")
        keep.update(holders)
    return keep


@app.command("export-review")
def export_review(
    output: Path = typer.Argument(Path("review.json"), help="Label Studio tasks JSON to write."),
    policy: str = typer.Option("low_confidence", help="low_confidence | margin | disagreement (ensemble members)."),
    limit: int = typer.Option(100, min=1, help="Tasks to write, at most."),
    config_output: Path = typer.Option(None, help="Also write the matching Label Studio labeling config (XML)."),
    project: Path = typer.Option(Path("."), help="Project root holding params.yaml and models/final."),
    database_url: str = DatabaseUrlOption,
) -> None:
    """The review queue (unlabelled logged predictions that most need a human) as Label Studio
    tasks, the model's label pre-annotated; see docs/serving.md#reviewing-predictions."""
    from sentiment_pipeline.predlog.review import POLICIES
    from sentiment_pipeline.serving.review_commands import export_review as run

    if policy not in POLICIES:
        raise typer.BadParameter(f"expected one of {', '.join(POLICIES)}, got {policy!r}", param_hint="--policy")
    _run(run, project=project, output=output, policy=policy, limit=limit, database_url=database_url,
         config_output=config_output)


@app.command("import-labels")
def import_labels(
    source: Path = typer.Argument(..., help="Label Studio's JSON export of the review project."),
    project: Path = typer.Option(Path("."), help="Project root holding params.yaml and models/final."),
    database_url: str = DatabaseUrlOption,
) -> None:
    """Store Label Studio's labels as feedback (key id label-studio), matched by prediction id;
    all or nothing, and importing the same export again adds nothing."""
    from sentiment_pipeline.serving.review_commands import import_labels as run

    _run(run, project=project, source=source, database_url=database_url)


# ---------------------------------------------------------------- API keys
keys_app = typer.Typer(no_args_is_help=True, help="API keys of the server: create, list, revoke (serve.keys_file).")
app.add_typer(keys_app, name="keys")
KeysProjectOption = typer.Option(Path("."), "--project", help="Project root holding params.yaml (serve.keys_file).")
KeysFileOption = typer.Option(None, "--keys-file", help="The key store (default: serve.keys_file under --project).")


def _keys_path(project: Path, path: Path | None) -> Path:
    from sentiment_pipeline.core.config import serve_settings
    from sentiment_pipeline.serving.auth import keys_file

    return path if path is not None else keys_file(serve_settings(project)[1], project)


@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., help="Who or what uses the key, e.g. 'mobile app' or 'prometheus'."),
    scope: list[str] = typer.Option(["predict"], help="predict | feedback | admin (repeatable)."),
    rate_limit: float = typer.Option(None, min=0.001, help="Requests/s for this key (default: serve.rate_limit_per_second)."),
    burst: int = typer.Option(None, min=1, help="Burst for this key (default: serve.rate_limit_burst)."),
    secret_file: Path = typer.Option(None, help="Write the key to this file (mode 0600) instead of printing it."),
    project: Path = KeysProjectOption,
    keys_file: Path = KeysFileOption,
) -> None:
    """Create a key and print it once (only its SHA-256 is stored)."""

    def run_create() -> None:
        from sentiment_pipeline.serving.auth import create_key

        path = _keys_path(project, keys_file)
        record, key = create_key(path, name, scope, rate_limit, burst)
        if secret_file is not None:
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(key + "\n")
        else:
            typer.echo(key)
        typer.echo(f"created key {record.id} ({record.name}; scopes {', '.join(record.scopes)}) in {path}; "
                   + (f"the key is in {secret_file}" if secret_file else "the key above is shown only now"), err=True)

    _run(run_create)


@keys_app.command("list")
def keys_list(project: Path = KeysProjectOption, keys_file: Path = KeysFileOption) -> None:
    """The keys of the store: id, name, scopes, created, revoked (never the keys themselves)."""

    def run_list() -> None:
        from sentiment_pipeline.serving.auth import read_store

        path = _keys_path(project, keys_file)
        records = read_store(path)
        if not records:
            typer.echo(f"no keys in {path}", err=True)
        for r in records:
            times = f"created {r.created_at:%Y-%m-%d %H:%M}" + (f", revoked {r.revoked_at:%Y-%m-%d %H:%M}"
                                                                 if r.revoked_at else "")
            typer.echo(f"{r.id}  {'active ' if r.active else 'revoked'}  {','.join(r.scopes):<22}  {r.name}  ({times})")

    _run(run_list)


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (the 12 digits after sp_)."),
                project: Path = KeysProjectOption, keys_file: Path = KeysFileOption) -> None:
    """Revoke a key: running servers refuse it within a second (they re-read the store)."""

    def run_revoke() -> None:
        from sentiment_pipeline.serving.auth import RELOAD_SECONDS, revoke_key

        record = revoke_key(_keys_path(project, keys_file), key_id)
        typer.echo(f"revoked key {record.id} ({record.name}); servers refuse it within {RELOAD_SECONDS:g} s", err=True)

    _run(run_revoke)


@app.command("prune-log")
def prune_log(
    older_than: str = typer.Option(..., help="Age of the rows to delete: 30d, 12h or 90m."),
    project: Path = typer.Option(Path("."), help="Project root holding params.yaml (serve.database_url)."),
    database_url: str = DatabaseUrlOption,
) -> None:
    """Delete predictions and feedback older than --older-than from the prediction log (what
    serve.retention_days does hourly while serving)."""
    age = _duration(older_than, "--older-than")

    def run_prune() -> None:
        from sentiment_pipeline.core.config import serve_settings
        from sentiment_pipeline.predlog.prediction_log import connect, prune

        _, settings = serve_settings(project)
        engine = connect(database_url or settings.database_url, project, create=False)
        try:
            removed = prune(engine, age)
        finally:
            engine.dispose()
        logging.getLogger("sentiment_pipeline.predlog").info(
            "deleted %d prediction(s) and %d feedback row(s) older than %s", *removed, older_than)

    _run(run_prune)


@app.command("migrate-log")
def migrate_log(
    project: Path = typer.Option(Path("."), help="Project root holding params.yaml (serve.database_url)."),
    database_url: str = DatabaseUrlOption,
) -> None:
    """Bring the prediction log's schema to this version's (Alembic); serve does it at start-up."""

    def run_migrate() -> None:
        from sentiment_pipeline.core.config import serve_settings
        from sentiment_pipeline.predlog.prediction_log import connect
        from sentiment_pipeline.predlog.schema import current_revision

        _, settings = serve_settings(project)
        engine = connect(database_url or settings.database_url, project)  # upgrades
        try:
            with engine.connect() as connection:
                revision = current_revision(connection)
        finally:
            engine.dispose()
        logging.getLogger("sentiment_pipeline.predlog").info(
            "%s: schema at revision %s", engine.url.render_as_string(hide_password=True), revision)

    _run(run_migrate)


def _duration(value: str, option: str):
    from datetime import timedelta

    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = value[:-1], value[-1:]
    try:
        amount = float(number)
    except ValueError:
        amount = -1.0
    if unit not in units or not amount > 0:
        raise typer.BadParameter(f"expected a positive number of days, hours or minutes such as 30d, 12h or 90m, "
                                 f"got {value!r}", param_hint=option)
    return timedelta(**{units[unit]: amount})


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
    last: int = typer.Option(None, min=1, help="The newest N predictions (default: monitor.window_rows)."),
    since: str = typer.Option(None, help="Window start, ISO time (UTC unless an offset is given)."),
    until: str = typer.Option(None, help="Window end (exclusive), ISO time."),
    database_url: str = DatabaseUrlOption,
    output_dir: Path = typer.Option(None, help="Where monitor.json and report.html go (default: monitor.output_dir)."),
    history: bool = typer.Option(None, "--history/--no-history", help="Store the run in the log's monitor_runs "
                                 "table (needs a writable log) (default: monitor.history)."),
    history_url: str = typer.Option(None, help="Where to store the run when --database-url is a read-only "
                                    "replica: the log's writable URL (default: the log read)."),
    webhook: str = typer.Option(None, envvar="SENTIMENT_MONITOR_WEBHOOK_URL", show_envvar=True,
                                help="POST a JSON summary here on drift or error (default: monitor.webhook_url)."),
    example_texts: int = typer.Option(None, min=0, max=20, help="Example texts per side in the report "
                                      "(default: monitor.example_texts); 0 where the report is shared (CI artifacts)."),
) -> None:
    """Drift and estimated accuracy of the served model on a window of the prediction log.
    Exit code 0: ok (or too few rows to judge); 1: a check beyond its threshold; 2: an error."""
    window_start, window_end = _utc(since, "--since"), _utc(until, "--until")
    if history is False and history_url:
        raise typer.BadParameter("stores the run, which --no-history says not to: give one, not both",
                                 param_hint="--history-url")

    def run_monitor() -> None:
        from sentiment_pipeline.core.config import serve_settings
        from sentiment_pipeline.monitoring import command
        from sentiment_pipeline.monitoring.monitor import WindowSpec

        params, settings = serve_settings(project)
        url = database_url or settings.database_url
        keep = params.monitor.history if history is None else history
        config = params.monitor if example_texts is None else params.monitor.model_copy(
            update={"example_texts": example_texts})
        code = command.execute(project, config, url, WindowSpec(last=last, since=window_start, until=window_end),
                               output_dir, history_url=(history_url or url) if keep or history_url else None,
                               webhook_url=webhook or params.monitor.webhook_url)
        if code:
            raise typer.Exit(code=code)

    # Exit code 1 is the alert, so an error (missing model, unreadable log) exits with 2.
    _run(run_monitor, error_code=2)


@app.command("check-lock")
def check_lock(
    rev: str = typer.Option("HEAD", help="The revision holding the committed results."),
    tolerance: float = typer.Option(None, min=0.0, help="Absolute tolerance for computed values "
                                    "(default: tolerance.ABS_TOLERANCE, 5e-05)."),
) -> None:
    """Fail when dvc.lock differs from REV in code, params or data, or metrics/ and plots/ differ
    beyond the tolerance; one line saying what matched when they agree."""
    from sentiment_pipeline.review import lockcheck
    from sentiment_pipeline.review.tolerance import ABS_TOLERANCE

    def check(**kwargs) -> None:
        typer.echo(lockcheck.check(**kwargs))

    _run(check, root=Path.cwd(), rev=rev, tolerance=ABS_TOLERANCE if tolerance is None else tolerance)


@app.command("check-remote")
def check_remote(
    remote: str = typer.Option(None, "--remote", "-r", help="The DVC remote (default: the project's default remote)."),
) -> None:
    """Check that the DVC remote answers with the configured credentials (before dvc push/pull):
    one line naming the remote and what to do when it does not (make push, make pull)."""
    from sentiment_pipeline.review.remote import check_remote as check

    def run(**kwargs) -> None:
        info = check(**kwargs)
        typer.echo(f"{info.where()}: reachable, credentials accepted")

    _run(run, root=Path.cwd(), name=remote)


def main() -> None:
    """Console entry point (``sentiment-pipeline``, ``python -m sentiment_pipeline``)."""
    # Before anything loads NumPy: the same numbers on every CPU model (see kernels.py).
    kernels.pin(restart=True)
    app(prog_name="sentiment-pipeline")


if __name__ == "__main__":  # pragma: no cover
    main()
