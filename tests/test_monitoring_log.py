"""The monitor's and dashboard's reads of the prediction log, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import insert, select

from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.dashboard.page import read_live
from sentiment_pipeline.monitoring.monitor import WindowSpec, read_window
from sentiment_pipeline.predlog.prediction_log import LogSettings, PredictionLog, connect, feedback, predictions

from .postgres import postgres_server

pytestmark = pytest.mark.e2e
T0 = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres_url():
    """One real PostgreSQL server for the module's tests (each uses its own tables' rows)."""
    with postgres_server() as url:
        yield url


@contextmanager
def database(kind: str, tmp_path, postgres_url: str):
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.db'}"
    else:
        engine = connect(postgres_url)
        with engine.begin() as connection:  # a clean log for this test
            connection.execute(feedback.delete())
            connection.execute(predictions.delete())
        engine.dispose()
        yield postgres_url


def _row(i: int, version: str = "v1", minutes: int = 0, text: str | None = None) -> dict:
    return {"created_at": T0 + timedelta(minutes=minutes, seconds=i), "prediction_id": f"p{i}", "request_id": "r",
            "text": text or f"text {i}", "text_sha256": "0" * 64, "cleaned_length": 6, "label": "positive",
            "confidence": 0.9, "probabilities": {"positive": 0.9, "negative": 0.1}, "model_version": version,
            "latency_ms": 1.0}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_windows_feedback_and_live_counts(kind, tmp_path, request):
    url_of_postgres = request.getfixturevalue("postgres_url") if kind == "postgresql" else ""
    with database(kind, tmp_path, url_of_postgres) as url:
        engine = connect(url)
        rows = [_row(i, minutes=i // 3) for i in range(9)] + [_row(9, version="v0")]
        with engine.begin() as connection:
            connection.execute(insert(predictions), rows)
            connection.execute(insert(feedback), [
                {"created_at": T0, "prediction_id": "p1", "label": "negative"},
                {"created_at": T0, "prediction_id": "p1", "label": "positive"},  # the newest wins
                {"created_at": T0, "prediction_id": "p4", "label": "negative"}])
        newest = read_window(engine, WindowSpec(last=4, model_version="v1"))
        assert newest["prediction_id"].tolist() == ["p5", "p6", "p7", "p8"]  # oldest first
        everything = read_window(engine, WindowSpec(model_version="v1"))
        assert len(everything) == 9 and "p9" not in set(everything["prediction_id"])
        labels = dict(zip(everything["prediction_id"], everything["feedback_label"], strict=False))
        assert labels["p1"] == "positive" and labels["p4"] == "negative" and pd.isna(labels["p0"])
        ranged = read_window(engine, WindowSpec(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=2)))
        assert ranged["prediction_id"].tolist() == ["p3", "p4", "p5"]
        live = read_live(engine, ["negative", "positive"], model_version="v1", now=T0 + timedelta(minutes=2, seconds=30))
        assert live.requests_per_minute[-3:] == [4, 3, 3]  # p9 (another model, minute 0) counts as traffic
        assert live.class_counts == {"negative": 0, "positive": 9} and live.total == 10
        engine.dispose()


def test_a_reader_does_not_create_a_log_where_there_is_none(tmp_path):
    with pytest.raises(DataError, match="no prediction log there"):
        connect(f"sqlite:///{tmp_path / 'typo.db'}", create=False)
    assert not (tmp_path / "typo.db").exists()
    empty = tmp_path / "empty.db"
    import sqlite3

    sqlite3.connect(empty).close()
    with pytest.raises(DataError, match="holds no prediction log"):
        connect(f"sqlite:///{empty}", create=False)


def test_one_row_the_database_refuses_does_not_cost_its_batch(tmp_path, postgres_url):
    """PostgreSQL refuses a NUL in text; the API rejects such texts, and the writer, should one
    get through, writes the rest of its batch row by row."""
    with database("postgresql", tmp_path, postgres_url) as url:
        engine = connect(url)
        log = PredictionLog(engine, LogSettings())
        rows = [_row(i) for i in range(5)]
        rows[2]["text"] = "bad\x00text"

        async def write():
            log.start()
            await log.record(rows)
            await log.close()

        asyncio.run(write())
        engine = connect(url)
        with engine.connect() as connection:
            written = connection.execute(select(predictions.c.prediction_id)).scalars().all()
        assert sorted(written) == ["p0", "p1", "p3", "p4"]
        engine.dispose()


def test_monitor_history_on_postgresql_and_a_read_only_replica_is_one_line(postgres_url, tmp_path):
    """The migrated schema is the declared one on PostgreSQL too; runs are stored and read back
    in time order; a read-only replica (here: every transaction read-only) refuses the write
    with one line that names the way out and hides the password."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.engine import make_url

    from sentiment_pipeline.core.errors import ResourceError
    from sentiment_pipeline.monitoring import history
    from sentiment_pipeline.predlog import schema

    engine = connect(postgres_url)
    with engine.begin() as connection:
        assert compare_metadata(MigrationContext.configure(connection), schema.metadata) == []
        connection.execute(schema.monitor_runs.delete())
    checks = [{"name": "domain_classifier_auc", "value": 0.81, "threshold": 0.75, "drift": True, "applicable": True},
              {"name": "live_accuracy_drop", "value": None, "threshold": 0.05, "drift": False, "applicable": False}]
    for hour, status in ((9, "drift"), (8, "ok")):  # stored out of order: read back by time
        history.store(postgres_url, tmp_path, {"generated_at": f"2026-12-07T{hour:02d}:00:00+00:00", "status": status,
                                               "message": "m", "rows": 300, "model_version": "v1",
                                               "window": {"last": 300, "newest": "2026-12-07T07:59:00+00:00"},
                                               "checks": checks})
    runs = history.read_runs(engine, 10)
    assert [r["status"] for r in runs] == ["ok", "drift"] and runs[0]["checks"] == checks
    assert runs[1]["created_at"] == datetime(2026, 12, 7, 9, tzinfo=UTC)
    assert history.series(runs)["domain_classifier_auc"]["values"] == [0.81, 0.81]
    engine.dispose()

    replica = make_url(postgres_url).set(password="secret-pw").update_query_dict(
        {"options": "-c default_transaction_read_only=on"}).render_as_string(hide_password=False)
    with pytest.raises(ResourceError) as info:
        history.store(replica, tmp_path, {"generated_at": "2026-12-07T10:00:00+00:00", "status": "ok", "checks": []})
    message = str(info.value)
    assert "read-only transaction" in message and "--history-url" in message and "--no-history" in message
    assert "secret-pw" not in message and "\n" not in message
