"""What ``sentiment-pipeline monitor`` does around the judgement itself: turn failures into one
line, store the run in the log's history, and call the webhook on drift or error.

Exit codes: 0 ok (or too few rows to judge), 1 drift, 2 error (a :class:`PipelineError` raised
here; the CLI prints it). Neither a webhook nor the history changes them: a run that could not be
stored is an error line, and its verdict's exit code.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from sentiment_pipeline.core.config import MonitorConfig
from sentiment_pipeline.core.errors import PipelineError
from sentiment_pipeline.monitoring import history, webhook
from sentiment_pipeline.monitoring import monitor as monitoring

log = logging.getLogger("sentiment_pipeline.monitor")


def _one_line(exc: Exception, database_url: str) -> PipelineError | FileNotFoundError:
    """The error as the CLI reports it (a missing file stays a FileNotFoundError: the CLI names
    the stage that writes it)."""
    from sentiment_pipeline.predlog.access import read_failure

    if isinstance(exc, PipelineError | FileNotFoundError):
        return exc
    if isinstance(exc, SQLAlchemyError):  # the log failed after it was opened (monitoring.run names the rest)
        return read_failure(database_url, exc)
    assert isinstance(exc, OSError)  # a project file that cannot be read
    return PipelineError(f"{exc.filename or 'a file'}: cannot be read: {exc.strerror or exc}")


def execute(project: Path, config: MonitorConfig, database_url: str, spec: monitoring.WindowSpec,
            output_dir: Path | None = None, history_url: str | None = None,
            webhook_url: str | None = None) -> int:
    """Run the monitor; returns the exit code (0 or 1) or raises the error (exit code 2)."""
    if webhook_url:
        webhook.checked(webhook_url)
    result: dict | None = None
    report: str | None = None
    try:
        result, json_file, html_file = monitoring.run(project, config, database_url, spec, output_dir)
        report = str(html_file)
        log.info("%s: %s (%d rows); wrote %s and %s", result["status"], result["message"], result["rows"],
                 json_file, html_file)
        if history_url:
            try:
                run_id = history.store(history_url, project, result)
            except PipelineError as exc:
                # The verdict stands: a drift alert (exit 1) must not turn into an error (exit 2)
                # because the history could not be written, e.g. with a read-only credential.
                log.error("%s", exc)
            else:
                log.debug("stored as monitor run %d", run_id)
    except Exception as exc:  # noqa: BLE001 - every failure is one line (and the webhook hears of it)
        if isinstance(exc, PipelineError | SQLAlchemyError | OSError):
            error = _one_line(exc, database_url)
        else:  # e.g. a library's ValueError on degenerate text: the traceback at debug level only
            log.debug("monitor failed", exc_info=exc)
            error = PipelineError(f"monitor failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                                  " (run with SENTIMENT_LOG_LEVEL=debug for the traceback)")
        if webhook_url:
            message = str(error) if isinstance(error, PipelineError) else f"{error.filename}: not found"
            webhook.notify(webhook_url, webhook.summary(result, report, error=message), config.webhook_timeout_seconds)
        raise error from None
    if webhook_url:
        webhook.notify(webhook_url, webhook.summary(result, report), config.webhook_timeout_seconds)
    return monitoring.exit_code(result)
