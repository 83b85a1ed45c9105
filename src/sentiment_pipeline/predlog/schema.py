"""The prediction log's tables, and their migrations (Alembic, in ``migrations/``).

``upgrade`` brings any log to the newest revision: an empty database gets the tables, a log
written before migrations existed (the tables, no ``alembic_version``) is stamped as revision
0001 (the schema it has), and then every later revision runs. Workers of one server start at
the same time, so one upgrades at a time (PostgreSQL: an advisory lock; SQLite: a ``flock`` on a
file beside the database); ``serve`` also upgrades once, before it starts them.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)

metadata = MetaData()

predictions = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("prediction_id", String(32), nullable=False, unique=True),
    Column("request_id", String(128), nullable=False, index=True),
    Column("text", Text, nullable=True),  # NULL when serve.log_text is false
    Column("text_sha256", String(64), nullable=False),
    Column("cleaned_length", Integer, nullable=False),
    Column("label", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("probabilities", JSON, nullable=False),
    Column("model_version", String(32), nullable=False, index=True),
    Column("latency_ms", Float, nullable=False),
    Column("key_id", String(32), nullable=True, index=True),  # the API key that asked (0002)
)

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("prediction_id", String(32), nullable=False, index=True),
    Column("label", String(64), nullable=False),
    Column("feedback_id", String(32), nullable=True),
    Column("key_id", String(32), nullable=True, index=True),
    # unique: the spool ships a row again after a crash between commit and checkpoint (0002)
    Index("ix_feedback_feedback_id", "feedback_id", unique=True),
)

# One row per `sentiment-pipeline monitor` run (0003): the dashboard charts each check's value
# over time against its threshold. The checks are one JSON list (name, value, threshold, drift,
# applicable) rather than a table of their own: a run is read and written whole, and a check
# added later needs no migration.
monitor_runs = Table(
    "monitor_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("status", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("model_version", String(32), nullable=True),
    Column("rows", Integer, nullable=False),
    Column("window_first", DateTime(timezone=True), nullable=True),
    Column("window_newest", DateTime(timezone=True), nullable=True),
    Column("window", JSON, nullable=False),  # as asked: last / since / until
    Column("checks", JSON, nullable=False),
)

MIGRATIONS = Path(__file__).with_name("migrations")
LEGACY_REVISION = "0001"  # the schema of logs written before migrations existed


def _config(connection: Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _one_upgrader(engine: Engine) -> Iterator[None]:
    """Workers starting together must not both create the tables: on PostgreSQL an advisory lock
    does it (in ``upgrade``); a SQLite file gets an exclusive ``flock`` on ``<file>.migrate-lock``."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    with open(f"{database}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> str:
    """Bring the log's schema to the newest revision; returns it."""
    from alembic import command

    with _one_upgrader(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(74217)"))  # one upgrader at a time
        if current_revision(connection) is None and inspect(connection).has_table(predictions.name):
            command.stamp(_config(connection), LEGACY_REVISION)
        command.upgrade(_config(connection), "head")
        revision = current_revision(connection)
    assert revision is not None
    return revision
