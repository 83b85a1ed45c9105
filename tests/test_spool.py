"""The durable spool in front of the prediction log: records reach the database in order and
exactly once, through outages, rotations, restarts and killed writers (fast tier: SQLite and a
simulated outage; a real PostgreSQL outage under load is in test_log_durability.py)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.exc import OperationalError

from sentiment_pipeline.predlog import schema
from sentiment_pipeline.predlog.prediction_log import LogSettings, PredictionLog, connect, feedback, predictions
from sentiment_pipeline.predlog.spool import Position, SpoolDir, SpoolWriter


def _row(log: PredictionLog, i: int) -> dict:
    return log.row(prediction_id=f"{i:032x}", request_id="r", text=f"text {i}", cleaned_length=6, label="negative",
                   confidence=0.9, probabilities={"negative": 0.9, "positive": 0.1}, model_version="v1",
                   latency_ms=1.0, created_at=datetime(2026, 1, 1, tzinfo=UTC), key_id="k1")


def _ids(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        found = connection.execute(select(predictions.c.prediction_id).order_by(predictions.c.id)).scalars().all()
    engine.dispose()
    return list(found)


def _database_down(records) -> None:
    """A stand-in for ``PredictionLog._insert`` while the database is unreachable."""
    raise OperationalError("INSERT", {}, Exception("down"))


async def _until_logged(url: str, rows: int, seconds: float = 10) -> None:
    """Wait (at most ``seconds``) until the log holds ``rows`` predictions: what ships in the
    background (an adopted spool) gets there on its own time."""
    for _ in range(int(seconds / 0.05)):
        if len(_ids(url)) == rows:
            return
        await asyncio.sleep(0.05)


def test_segments_rotate_are_read_in_order_and_deleted_once_shipped(tmp_path):
    spool = SpoolDir.create(tmp_path)
    writer = SpoolWriter(spool, segment_bytes=100)
    for i in range(10):
        writer.append([f'{{"n": {i}, "pad": "{"x" * 40}"}}'.encode()])
    assert len(spool.segments()) > 3
    records, position = spool.read(4)
    assert [orjson.loads(r)["n"] for r in records] == [0, 1, 2, 3]
    spool.checkpoint(position)
    assert spool.segments()[0] == position.segment  # earlier segments deleted
    records, position = spool.read(100)
    assert [orjson.loads(r)["n"] for r in records] == list(range(4, 10))
    spool.checkpoint(position)
    assert spool.pending_bytes() == 0 and spool.read(10)[0] == []
    writer.close()
    assert spool.release() and not spool.path.exists()


def test_a_dead_writers_directory_is_adopted_and_its_partial_record_skipped(tmp_path):
    live = SpoolDir.create(tmp_path)
    dead = SpoolDir.create(tmp_path)
    writer = SpoolWriter(dead)
    writer.append([b'{"n": 1}', b'{"n": 2}'])
    with open(dead.segment_path(writer.number), "ab") as segment:
        segment.write(b'{"n": 3, "cut sh')  # killed in the middle of a write that was never fsync'd
    assert SpoolDir.adopt_orphans(tmp_path, exclude=set()) == []  # both locks are held
    os.close(dead._lock_fd)  # the process dies: the kernel releases its flock
    [adopted] = SpoolDir.adopt_orphans(tmp_path, exclude={live.path})
    assert adopted.path == dead.path and not adopted.owned
    records, position = adopted.read(10)
    assert [orjson.loads(r)["n"] for r in records] == [1, 2]
    assert position == Position(writer.number, 18 + 16)  # past the two records and the partial line
    adopted.checkpoint(position)
    assert adopted.pending_bytes() == 0 and adopted.read(10) == ([], position)


def test_a_live_writers_unfinished_line_waits(tmp_path):
    spool = SpoolDir.create(tmp_path)
    writer = SpoolWriter(spool)
    writer.append([b'{"n": 1}'])
    with open(spool.segment_path(writer.number), "ab") as segment:
        segment.write(b'{"n": 2')  # being written right now
    records, position = spool.read(10)
    assert records == [b'{"n": 1}'] and position.offset == 9


def test_predictions_and_feedback_reach_the_database_in_order(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(connect(url), LogSettings(spool_dir=tmp_path / "spool", flush_seconds=0.01))

    async def serve():
        log.start()
        for i in range(0, 300, 30):
            await log.record([_row(log, j) for j in range(i, i + 30)])
        await log.record_feedback(f"{5:032x}", "positive", key_id="k2")
        assert await log.flush(timeout=10)
        await log.close()

    asyncio.run(serve())
    assert _ids(url) == [f"{i:032x}" for i in range(300)]
    engine = create_engine(url)
    with engine.connect() as connection:
        [row] = connection.execute(select(feedback)).mappings().all()
        keys = set(connection.execute(select(predictions.c.key_id)).scalars())
    assert row["prediction_id"] == f"{5:032x}" and row["label"] == "positive" and row["key_id"] == "k2"
    assert len(row["feedback_id"]) == 32 and keys == {"k1"}
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())


def test_an_outage_loses_nothing_and_a_repeated_shipment_writes_once(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(connect(url), LogSettings(spool_dir=tmp_path / "spool", flush_seconds=0.01, batch_size=50))
    real_insert, calls = log._insert, {"n": 0}

    def flaky(records):
        calls["n"] += 1
        if calls["n"] <= 4:  # the database is away for the first attempts
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        if calls["n"] == 5:  # written, then the process "dies" before its checkpoint: shipped again
            real_insert([dict(r, r=dict(r["r"])) for r in records])
        return real_insert(records)

    monkeypatch.setattr(log, "_insert", flaky)

    async def serve():
        log.start()
        await log.record([_row(log, i) for i in range(120)])
        await asyncio.sleep(0.3)
        assert not log.database_up and log.spool_bytes > 0  # spooled, on disk
        assert await log.flush(timeout=20)
        assert log.database_up
        await log.close()

    asyncio.run(serve())
    assert _ids(url) == [f"{i:032x}" for i in range(120)]  # each once, in order


def test_a_restart_ships_what_the_last_process_left(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    spool_dir = tmp_path / "spool"
    first = PredictionLog(connect(url), LogSettings(spool_dir=spool_dir, flush_seconds=0.01, drain_seconds=0.2))
    first._insert = _database_down

    async def down():
        first.start()
        await first.record([_row(first, i) for i in range(40)])
        await first.close()  # the database never came back: the rows stay spooled

    asyncio.run(down())
    assert _ids(url) == [] and any(spool_dir.iterdir())
    second = PredictionLog(connect(url), LogSettings(spool_dir=spool_dir, flush_seconds=0.01))

    async def up():
        second.start()
        await second.record([_row(second, 40)])
        assert await second.flush(timeout=10)
        await _until_logged(url, 41)  # the adopted directory ships in the background
        await second.close()

    asyncio.run(up())
    assert sorted(_ids(url)) == [f"{i:032x}" for i in range(41)]
    assert list(spool_dir.iterdir()) == []


def test_a_running_worker_adopts_what_a_stopped_one_left(tmp_path, monkeypatch):
    """A rolling restart: the old worker stops with rows it could not ship (its database was
    away), while the new one already runs; the new one ships them within ADOPT_EVERY_SECONDS."""
    from sentiment_pipeline.predlog import prediction_log

    monkeypatch.setattr(prediction_log, "ADOPT_EVERY_SECONDS", 0.2)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    spool_dir = tmp_path / "spool"
    new = PredictionLog(connect(url), LogSettings(spool_dir=spool_dir, flush_seconds=0.01))
    old = PredictionLog(connect(url), LogSettings(spool_dir=spool_dir, flush_seconds=0.01, drain_seconds=0.2))
    old._insert = _database_down

    async def both():
        new.start()
        old.start()  # nothing to adopt: the new worker's spool is locked
        await old.record([_row(old, i) for i in range(30)])
        await old.close()  # stops with its 30 rows spooled
        assert _ids(url) == []
        await _until_logged(url, 30)
        await new.close()

    asyncio.run(both())
    assert sorted(_ids(url)) == [f"{i:032x}" for i in range(30)]
    assert list(spool_dir.iterdir()) == []


@pytest.mark.parametrize("overflow", ["reject", "drop"])
def test_a_full_spool_refuses_or_drops_as_configured(tmp_path, overflow):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(connect(url), LogSettings(spool_dir=tmp_path / "spool", flush_seconds=0.01,
                                                  spool_max_bytes=2000, overflow=overflow, drain_seconds=0.1))
    log._insert = _database_down

    async def fill():
        log.start()
        await log.record([_row(log, i) for i in range(20)])
        for _ in range(100):
            if log.over_budget:
                break
            await asyncio.sleep(0.02)
        assert log.over_budget
        assert log.accepting is (overflow == "drop")
        await log.record([_row(log, 99)])
        await log.close()

    asyncio.run(fill())
    assert log.dropped == (1 if overflow == "drop" else 0)


def test_a_log_from_before_migrations_is_upgraded_in_place(tmp_path):
    assert_upgrade_from_the_first_schema(f"sqlite:///{tmp_path / 'old.db'}")


def assert_upgrade_from_the_first_schema(url: str) -> None:
    """Today's tables as the first release wrote them (no alembic_version), with a row; then
    ``connect`` upgrades them in place (also run on PostgreSQL: test_log_durability.py)."""
    engine = create_engine(url)
    postgresql = engine.dialect.name == "postgresql"
    timestamp = "TIMESTAMP WITH TIME ZONE" if postgresql else "DATETIME"
    key = "SERIAL PRIMARY KEY" if postgresql else "INTEGER PRIMARY KEY"  # what create_all made
    with engine.begin() as connection:  # the schema as it was, with a row in it
        connection.execute(text(
            f"CREATE TABLE predictions (id {key}, created_at {timestamp} NOT NULL, "
            "prediction_id VARCHAR(32) NOT NULL UNIQUE, request_id VARCHAR(128) NOT NULL, text TEXT, "
            "text_sha256 VARCHAR(64) NOT NULL, cleaned_length INTEGER NOT NULL, label VARCHAR(64) NOT NULL, "
            "confidence FLOAT NOT NULL, probabilities JSON NOT NULL, model_version VARCHAR(32) NOT NULL, "
            "latency_ms FLOAT NOT NULL)"))
        connection.execute(text(f"CREATE TABLE feedback (id {key}, created_at {timestamp} NOT NULL, "
                                "prediction_id VARCHAR(32) NOT NULL, label VARCHAR(64) NOT NULL)"))
        connection.execute(text("INSERT INTO predictions (created_at, prediction_id, request_id, text, text_sha256, "
                                "cleaned_length, label, confidence, probabilities, model_version, latency_ms) VALUES "
                                "('2026-01-01 00:00:00+00', 'old', 'r', 't', 'h', 1, 'negative', 0.9, '{}', 'v0', 1.0)"))
    engine.dispose()
    engine = connect(url)
    with engine.connect() as connection:
        assert schema.current_revision(connection) == schema.head_revision()
        [row] = connection.execute(select(predictions)).mappings().all()
    assert row["prediction_id"] == "old" and row["key_id"] is None
    log = PredictionLog(engine, LogSettings())
    with engine.begin() as connection:  # and the upgraded tables take today's rows
        connection.execute(insert(predictions), [_row(log, 1)])
        connection.execute(insert(feedback).values(created_at=datetime.now(UTC), prediction_id="old", label="neutral",
                                                   feedback_id="f" * 32, key_id="k1"))
    engine.dispose()


def test_prune_deletes_what_is_older_than_the_cutoff(tmp_path):
    from datetime import timedelta

    from sentiment_pipeline.predlog.prediction_log import now, prune

    engine = connect(f"sqlite:///{tmp_path / 'log.db'}")
    log = PredictionLog(engine, LogSettings())
    rows = [_row(log, i) for i in range(5)]
    for i, row in enumerate(rows):
        row["created_at"] = now() - timedelta(days=10 * i)  # 0, 10, 20, 30, 40 days old
    with engine.begin() as connection:
        connection.execute(insert(predictions), rows)
        connection.execute(insert(feedback), [{"created_at": now() - timedelta(days=35), "prediction_id": rows[4][
            "prediction_id"], "label": "positive", "feedback_id": "a" * 32, "key_id": None}])
    assert prune(engine, timedelta(days=25), batch_rows=1) == (2, 1)
    with engine.connect() as connection:
        kept = connection.execute(select(predictions.c.prediction_id)).scalars().all()
    assert kept == [r["prediction_id"] for r in rows[:3]]
    engine.dispose()


def test_a_failed_write_is_cut_back_so_its_retry_lands_once(tmp_path, monkeypatch):
    spool = SpoolDir.create(tmp_path)
    writer = SpoolWriter(spool)
    writer.append([b'{"n": 1}'])
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        writer.append([b'{"n": 2}', b'{"n": 3}'])
    monkeypatch.setattr(os, "fsync", real_fsync)
    writer.append([b'{"n": 2}', b'{"n": 3}'])  # the flusher's retry
    records, _ = spool.read(10)
    assert [orjson.loads(r)["n"] for r in records] == [1, 2, 3]


def test_a_damaged_record_is_skipped_and_the_rest_shipped(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    spool_dir = tmp_path / "spool"
    dead = SpoolDir.create(spool_dir)
    writer = SpoolWriter(dead)
    log = PredictionLog(connect(url), LogSettings(spool_dir=spool_dir, flush_seconds=0.01))
    good = [orjson.dumps({"k": "p", "r": _row(log, i)}) for i in range(3)]
    writer.append([good[0], b'{"k": "p", "r": {"crea', good[1], good[2]])
    os.close(dead._lock_fd)  # its process died

    async def ship():
        log.start()
        await _until_logged(url, 3)
        await log.close()

    asyncio.run(ship())
    assert _ids(url) == [f"{i:032x}" for i in range(3)] and log.refused == 1
