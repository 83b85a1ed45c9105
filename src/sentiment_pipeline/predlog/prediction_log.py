"""The prediction log: every served prediction and every feedback label, through SQLAlchemy.

SQLite (a WAL-mode file under ``logs/``) by default, PostgreSQL with ``serve.database_url``.
The request path never waits for the database: predictions go into a bounded queue that a
background task writes in batches; a full queue makes requests wait (back-pressure) rather than
drop rows, and shutdown drains it, so every answered prediction is in the log.
"""

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError as DataError_
from sqlalchemy.exc import IntegrityError

from sentiment_pipeline.core.errors import ConfigError, DataError
from sentiment_pipeline.predlog.queues import next_batch

log = logging.getLogger(__name__)

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
)

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("prediction_id", String(32), nullable=False, index=True),
    Column("label", String(64), nullable=False),
)


def _orjson_text(value) -> str:
    return orjson.dumps(value).decode()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


def connect(url: str, root: Path = Path("."), create: bool = True) -> Engine:
    """An engine for ``url``, the schema created if absent. A relative SQLite path is taken
    from ``root``, its directory created, and the file put in WAL mode (readers such as
    ``monitor`` do not block the writer). With ``create=False`` (readers: a mistyped URL must
    not create an empty log that then looks like a quiet day) a missing log is an error."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with the bad URL
        raise ConfigError(f"serve.database_url={url!r} is not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        path = path if path.is_absolute() else root / path
        if not create and not path.is_file():
            raise DataError(f"{path}: no prediction log there (serve.database_url / --database-url)")
        path.parent.mkdir(parents=True, exist_ok=True)
        parsed = parsed.set(database=str(path))
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    # orjson for the probabilities column: the log writes every prediction, and the standard
    # library's encoder was a tenth of the server's time under batch load.
    engine = create_engine(parsed, pool_pre_ping=True, json_serializer=_orjson_text)
    if parsed.get_backend_name() == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    if create:
        metadata.create_all(engine)
    elif not inspect(engine).has_table(predictions.name):
        engine.dispose()
        raise DataError(f"{engine.url.render_as_string(hide_password=True)}: holds no prediction log "
                        f"(no '{predictions.name}' table)")
    return engine


@dataclass
class LogSettings:
    log_text: bool = True
    queue_size: int = 10_000
    batch_size: int = 500
    flush_seconds: float = 0.2


class PredictionLog:
    """Queue in front of the database; ``start`` in the app's lifespan, ``close`` at shutdown."""

    def __init__(self, engine: Engine, settings: LogSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=settings.queue_size)
        self.task: asyncio.Task | None = None
        self.written = 0

    def row(self, *, prediction_id: str, request_id: str, text: str, cleaned_length: int,
            label: str, confidence: float, probabilities: dict[str, float], model_version: str,
            latency_ms: float, created_at: datetime | None = None) -> dict:
        return {"created_at": created_at or now(), "prediction_id": prediction_id, "request_id": request_id,
                "text": text if self.settings.log_text else None, "text_sha256": text_sha256(text),
                "cleaned_length": cleaned_length, "label": label, "confidence": confidence,
                "probabilities": probabilities, "model_version": model_version, "latency_ms": latency_ms}

    async def record(self, rows: list[dict]) -> None:
        for row in rows:
            await self.queue.put(row)  # waits only when the queue is full

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="prediction-log-writer")

    async def _run(self) -> None:
        while True:
            await self._write(await next_batch(self.queue, self.settings.batch_size,
                                               self.settings.flush_seconds))

    async def _write(self, batch: list[dict], attempts: int = 5) -> None:
        try:
            for attempt in range(1, attempts + 1):
                try:
                    await asyncio.to_thread(self._insert, batch)
                    self.written += len(batch)
                    return
                except Exception as exc:  # a database restart: retry with back-off, keep serving
                    if attempt == attempts:
                        log.error("prediction log: %d row(s) not written after %d attempts: %s",
                                  len(batch), attempts, exc)
                        return
                    await asyncio.sleep(0.2 * 2 ** attempt)
        finally:
            for _ in batch:
                self.queue.task_done()

    def _insert(self, batch: list[dict]) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(predictions), batch)
        except (IntegrityError, DataError_) as exc:
            if len(batch) == 1:
                raise
            # one bad row must not cost the other rows of its batch: write them one by one
            log.warning("prediction log: a batch of %d was refused (%s); writing row by row",
                        len(batch), str(exc).splitlines()[0])
            for row in batch:
                try:
                    with self.engine.begin() as connection:
                        connection.execute(insert(predictions), [row])
                except (IntegrityError, DataError_) as row_error:
                    log.error("prediction log: prediction %s not written: %s", row["prediction_id"],
                              str(row_error).splitlines()[0])

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await self.queue.join()

    async def close(self) -> None:
        """Drain the queue, stop the writer, release the engine."""
        await self.flush()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.engine.dispose()
        log.info("prediction log closed: %d row(s) written", self.written)

    # ---------------------------------------------------------------- feedback
    def prediction_exists(self, prediction_id: str) -> bool:
        with self.engine.connect() as connection:
            found = connection.execute(select(predictions.c.id).where(
                predictions.c.prediction_id == prediction_id)).first()
        return found is not None

    def add_feedback(self, prediction_id: str, label: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(feedback).values(created_at=now(), prediction_id=prediction_id,
                                                       label=label))


def labelled_rows(engine: Engine) -> Iterator[dict]:
    """(text, label) of every prediction that received feedback; the newest label wins."""
    query = (select(predictions.c.prediction_id, predictions.c.text, feedback.c.label, feedback.c.id)
             .join(feedback, feedback.c.prediction_id == predictions.c.prediction_id)
             .order_by(feedback.c.id))
    latest: dict[str, dict] = {}
    with engine.connect() as connection:
        for row in connection.execute(query):
            latest[row.prediction_id] = {"prediction_id": row.prediction_id, "text": row.text,
                                         "label": row.label}
    yield from latest.values()


def export_feedback(engine: Engine, target: Path) -> tuple[int, int]:
    """Write the labelled predictions as a (text, label) CSV that ``download`` reads with
    ``source: file``; returns (rows written, rows without stored text)."""
    import pandas as pd

    from sentiment_pipeline.core.errors import DataError
    from sentiment_pipeline.core.files import write_csv

    rows = list(labelled_rows(engine))
    kept = [{"text": row["text"], "label": row["label"]} for row in rows if row["text"] is not None]
    if rows and not kept:
        raise DataError(f"{len(rows)} prediction(s) have feedback, but none has its text stored "
                        "(serve.log_text was false); only their SHA-256 is in the log")
    write_csv(pd.DataFrame(kept, columns=["text", "label"]), target)
    return len(kept), len(rows) - len(kept)
