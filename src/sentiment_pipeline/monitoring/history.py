"""Every ``monitor`` run, kept in the prediction log (table ``monitor_runs``, migration 0003), and
the dashboard's charts of each check's value over those runs against its threshold.

The monitor reads predictions through a read-only connection; storing its run needs a writable
one. It is opened on the same URL unless ``--history-url`` names another (the primary, when the
monitor reads a read-only replica), and a log that refuses the write is one line saying so.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from sqlalchemy import Engine, insert, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from sentiment_pipeline.core.errors import PipelineError, ResourceError
from sentiment_pipeline.monitoring.charts import line_chart
from sentiment_pipeline.predlog.schema import monitor_runs, upgrade

log = logging.getLogger(__name__)

CHECK_FIELDS = ("name", "value", "threshold", "drift", "applicable")
# The dashboard charts the newest 200 runs: about 8 days of the hourly monitor workflow, and
# 200 points still read as a line in a 250-pixel-wide chart.
DASHBOARD_RUNS = 200


def _time(value) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def row_of(result: dict) -> dict:
    """The ``monitor_runs`` row of a monitor result (monitor.json's content)."""
    window = result.get("window") or {}
    return {"created_at": _time(result.get("generated_at")) or datetime.now(UTC),
            "status": str(result.get("status")), "message": str(result.get("message", "")),
            "model_version": result.get("model_version"), "rows": int(result.get("rows", 0)),
            "window_first": _time(window.get("first")), "window_newest": _time(window.get("newest")),
            "window": {k: window.get(k) for k in ("last", "since", "until")},
            "checks": [{k: check.get(k) for k in CHECK_FIELDS} for check in result.get("checks", [])]}


def record(engine: Engine, result: dict) -> int:
    """Insert the run; returns its id."""
    with engine.begin() as connection:
        return int(connection.execute(insert(monitor_runs).returning(monitor_runs.c.id), [row_of(result)]).scalar_one())


def store(url: str, root: Path, result: dict) -> int:
    """Open the log at ``url`` for writing (bringing its schema up to date if it predates
    ``monitor_runs``), store the run, close it. Any failure is one :class:`PipelineError` line
    naming the URL (password hidden) and the ways out."""
    from sentiment_pipeline.predlog.access import _reason, _with_timeout, checked_url, redacted
    from sentiment_pipeline.predlog.prediction_log import connect

    parsed = checked_url(url)
    engine: Engine | None = None
    try:
        engine = connect(_with_timeout(parsed), root, create=False)  # an existing log: never a new file
        if not inspect(engine).has_table(monitor_runs.name):  # a log older than the server's upgrade
            upgrade(engine)
        return record(engine, result)
    except PipelineError:
        raise
    except (SQLAlchemyError, OSError) as exc:
        raise ResourceError(f"{redacted(url)}: this monitor run could not be stored in table {monitor_runs.name} "
                            f"({_reason(exc)}); monitor.json and report.html are written. A read-only replica? "
                            "pass --history-url with a writable URL of the log, or --no-history") from None
    finally:
        if engine is not None:
            engine.dispose()


def read_runs(engine: Engine, limit: int) -> list[dict]:
    """The newest ``limit`` runs, oldest first, as dicts of their columns."""
    query = select(monitor_runs).order_by(monitor_runs.c.created_at.desc(), monitor_runs.c.id.desc()).limit(limit)
    with engine.connect() as connection:
        rows = [dict(row) for row in connection.execute(query).mappings()]
    return rows[::-1]


def dashboard_runs(engine: Engine, limit: int = DASHBOARD_RUNS) -> list[dict] | None:
    """:func:`read_runs` for the dashboard: None (said on the page) when the log cannot be read."""
    try:
        return read_runs(engine, limit)
    except SQLAlchemyError as exc:
        log.warning("dashboard: the monitor history is not readable: %s", exc)
        return None


# ------------------------------------------------------------------ the dashboard's charts
def _label(value) -> str:
    stamp = value if isinstance(value, datetime) else _time(value)
    if stamp is None:
        return "?"
    stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)  # SQLite drops the zone
    return stamp.strftime("%m-%d %H:%M")  # short: two fit under a 300-pixel chart


def series(runs: list[dict]) -> dict[str, dict]:
    """Per check, in the order checks first appear: the run labels, the values (None where
    the check was not applicable) and the threshold of the newest run."""
    found: dict[str, dict] = {}
    for run in runs:
        for check in run.get("checks") or []:
            if isinstance(check, dict) and isinstance(check.get("name"), str):
                found.setdefault(check["name"], {"labels": [], "values": [], "threshold": None})
    for name, line in found.items():
        for run in runs:
            check = next((c for c in run.get("checks") or [] if isinstance(c, dict) and c.get("name") == name), None)
            value = check.get("value") if check and check.get("applicable") else None
            line["labels"].append(_label(run.get("created_at")))
            line["values"].append(float(value) if isinstance(value, int | float) else None)
            if check and isinstance(check.get("threshold"), int | float):
                line["threshold"] = float(check["threshold"])
    return found


def history_charts(runs: list[dict] | None) -> str:
    """One small line chart per check over the stored runs, its threshold a dashed line."""
    if runs is None:
        return '<p class="muted">monitor history: the prediction log is not readable</p>'
    if not runs:
        return ('<p class="muted">no monitor run stored yet (each <code>sentiment-pipeline monitor</code> '
                'run is kept in the log unless --no-history)</p>')
    charts = [line_chart(line["labels"], line["values"], title=name, width=300, height=150,
                         threshold=line["threshold"], chart_id=f"history-{name}")
              for name, line in series(runs).items()]
    return (f'<p class="muted">{len(runs)} stored run(s), {escape(_label(runs[0].get("created_at")))} to '
            f'{escape(_label(runs[-1].get("created_at")))} (UTC); dashed: the threshold</p>'
            f'<div id="monitor-history" style="display:flex;flex-wrap:wrap;gap:8px">{"".join(charts)}</div>')
