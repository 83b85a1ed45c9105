"""What ``sentiment-pipeline export-review`` and ``import-labels`` do (cli.py parses options)."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from sentiment_pipeline.core.errors import PipelineError

log = logging.getLogger("sentiment_pipeline.review")


def _classes(project: Path) -> list[str]:
    from sentiment_pipeline.inference.artifacts import verify_model

    return [str(c) for c in verify_model(project).card["classes"]]


def export_review(project: Path, output: Path, policy: str, limit: int, database_url: str | None,
                  config_output: Path | None) -> None:
    """The review queue of the log as Label Studio tasks JSON (and the labeling config)."""
    from sentiment_pipeline.core.config import serve_settings
    from sentiment_pipeline.predlog.access import open_reader, read_failure
    from sentiment_pipeline.predlog.labelstudio import write_tasks
    from sentiment_pipeline.predlog.review import review_queue

    _, settings = serve_settings(project)
    for target in (output, config_output):
        if target is not None and target.is_dir():  # atomic_path would replace the whole directory
            raise PipelineError(f"{target}: is a directory; expected a file name")
    predictor = None
    if policy == "disagreement":  # the members re-score the texts: the verified served model
        from sentiment_pipeline.inference.predictor import Predictor

        predictor = Predictor.load(project)
        classes = predictor.classes
    else:
        classes = _classes(project)
    url = database_url or settings.database_url
    engine = open_reader(url, project)  # SQLite read-only: a mistyped path creates nothing
    try:
        queue = review_queue(engine, policy, limit, settings.review_window_rows, predictor)
    except SQLAlchemyError as exc:
        raise read_failure(url, exc) from None
    finally:
        engine.dispose()
    try:
        written = write_tasks(queue, output, classes, config_output)
    except OSError as exc:
        raise PipelineError(f"{exc.filename or output}: cannot be written: {exc.strerror or exc}") from None
    log.info("%d task(s) to review (%s, of %d candidate(s) among the newest %d predictions) written to %s%s%s",
             written, policy, queue.candidates, queue.window_rows, output,
             f"; labeling config in {config_output}" if config_output else "",
             f"; {queue.other_versions} of another model version left out" if queue.other_versions else "")


def import_labels(project: Path, source: Path, database_url: str | None) -> None:
    """A Label Studio JSON export into the feedback table, all or nothing."""
    from sentiment_pipeline.core.config import serve_settings
    from sentiment_pipeline.predlog.access import checked_url, read_failure
    from sentiment_pipeline.predlog.labelstudio import KEY_ID
    from sentiment_pipeline.predlog.labelstudio import import_labels as run_import
    from sentiment_pipeline.predlog.prediction_log import connect

    _, settings = serve_settings(project)
    classes = _classes(project)
    url = database_url or settings.database_url
    checked_url(url)
    try:
        engine = connect(url, project, create=False)  # an existing log only: a typo creates nothing
    except SQLAlchemyError as exc:
        raise read_failure(url, exc) from None
    try:
        result = run_import(engine, source, classes)
    except SQLAlchemyError as exc:
        raise PipelineError(f"{source}: nothing imported: the prediction log failed: "
                            f"{str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    plan = result.plan
    log.info("%s: %d label(s) imported as feedback (key_id %s), %d already imported; of %d task(s), "
             "%d without a label, %d left out because annotators disagree",
             source, result.written, KEY_ID, result.already, plan.tasks, plan.unlabelled, plan.conflicting)
