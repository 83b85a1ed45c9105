"""The prediction log: every served prediction and every feedback label, through SQLAlchemy.

SQLite (a WAL-mode file under ``logs/``) by default, PostgreSQL with ``serve.database_url``.
The request path never waits for the database: answered predictions and feedback go to a
durable local spool (``spool.py``: fsync'd every ``flush_seconds``), and a background thread
ships them to the database in order, exactly once, retrying for as long as it is away. The
spool is bounded by ``serve.spool_max_bytes``; past it, ``serve.log_overflow`` says whether new
predictions are refused (503) or answered without being logged.
"""

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import orjson
from sqlalchemy import Engine, Table, create_engine, delete, event, insert, inspect, select
from sqlalchemy.exc import DataError as DataError_
from sqlalchemy.exc import IntegrityError

from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.predlog.schema import feedback, predictions, upgrade
from sentiment_pipeline.predlog.spool import SpoolDir, SpoolWriter

log = logging.getLogger(__name__)

def _orjson_text(value) -> str:
    return orjson.dumps(value).decode()


def new_ids(n: int) -> list[str]:
    """``n`` ids as 32 hex digits: UUIDv7 (RFC 9562), the creation time in milliseconds, then 74
    random bits, from one ``os.urandom`` call. Time-ordered rather than random (uuid4) because
    the log indexes them (prediction ids, request ids): a random id lands on a random page of a
    large index, a time-ordered one beside the last. Shipping to a SQLite log of 800,000 rows
    took 81 µs of CPU per row with random ids, half of it in the kernel writing scattered
    pages, and 21 µs with these (``make bench-log``). The time one reveals is when its client
    asked, which that client knows; its 74 random bits keep it unguessable (feedback names a
    prediction by its id)."""
    millis = time.time_ns() // 1_000_000
    random = os.urandom(10 * n)
    ids = []
    for i in range(n):
        bits = int.from_bytes(random[10 * i:10 * i + 10])  # 80 bits: 12 of rand_a, 62 of rand_b, 6 unused
        value = (millis << 80) | (0x7 << 76) | ((bits >> 62 & 0xFFF) << 64) | (0b10 << 62) | (bits & (1 << 62) - 1)
        ids.append(f"{value:032x}")
    return ids


def new_id() -> str:
    return new_ids(1)[0]


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


def connect(url: str, root: Path = Path("."), create: bool = True, read_only: bool = False) -> Engine:
    """An engine for ``url``, the schema created if absent. A relative SQLite path is taken
    from ``root``, its directory created, and the file put in WAL mode (readers such as
    ``monitor`` do not block the writer). With ``create=False`` (readers: a mistyped URL must
    not create an empty log that then looks like a quiet day) a missing log is an error.
    ``read_only=True`` (readers, with ``create=False``) opens a SQLite file read-only (a
    ``mode=ro`` URI): it is never created, converted to WAL or written to."""
    from sentiment_pipeline.predlog.access import checked_url

    parsed = checked_url(url)  # SQLite or PostgreSQL, else one line without the password
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
    if parsed.get_backend_name() == "sqlite" and read_only:
        from urllib.parse import quote

        @event.listens_for(engine, "do_connect")
        def _sqlite_read_only(_dialect, _record, cargs, cparams) -> None:
            # the file as a read-only URI; engine.url (and every message naming it) stays as given
            if cargs and cargs[0] != ":memory:" and not cparams.get("uri"):  # (a URI given: as it is)
                cargs[0] = f"file:{quote(cargs[0])}?mode=ro"
                cparams["uri"] = True
    elif parsed.get_backend_name() == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    if create:
        upgrade(engine)
    elif not inspect(engine).has_table(predictions.name):
        engine.dispose()
        raise DataError(f"{engine.url.render_as_string(hide_password=True)}: holds no prediction log "
                        f"(no '{predictions.name}' table)")
    return engine


@dataclass
class LogSettings:
    log_text: bool = True
    queue_size: int = 10_000  # records waiting for the spool before requests wait (back-pressure)
    batch_size: int = 500  # records shipped to the database per transaction
    # How often answered records are written to the spool and fsync'd: the most a SIGKILL can
    # lose. 50 ms is one fsync per interval (about 1-5 ms on an SSD) shared by every request.
    flush_seconds: float = 0.05
    spool_dir: Path | None = None  # None: a temporary directory (tests, in-process use)
    spool_max_bytes: int = 1 << 30
    overflow: Literal["reject", "drop"] = "reject"
    drain_seconds: float = 5.0  # at shutdown, how long to keep shipping before leaving the rest spooled
    retention_days: float | None = None  # prune older rows hourly while serving; None keeps everything
    segment_bytes: int = 16 << 20


BACKPRESSURE_SECONDS = 5.0  # the longest a request waits for a slow spool before going on (rows stay queued)
PRUNE_EVERY_SECONDS = 3600  # serve.retention_days: how often a worker deletes what has expired
# How often a running worker looks for spools whose process is gone (a rolling restart's old worker
# that stopped with rows it could not ship in its drain time): one directory listing and a
# non-blocking flock per spool directory, so cheap; such rows then wait at most this long.
ADOPT_EVERY_SECONDS = 10.0

# database errors that say "never this row" (skip it) rather than "not now" (retry the batch)
_ROW_REFUSED = (IntegrityError, DataError_)


class PredictionLog:
    """Answered predictions and feedback: into a durable local spool first (see spool.py), then
    shipped to the database in order, exactly once (``ON CONFLICT DO NOTHING`` on their ids), by
    a background thread that retries for as long as the database is away.

    ``start`` in the app's lifespan, ``close`` at shutdown."""

    def __init__(self, engine: Engine, settings: LogSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.shipped = 0  # records in the database (this process)
        self.dropped = 0  # records not logged because the spool was full (overflow: drop)
        self.refused = 0  # records the database refused (a value it cannot store)
        self.database_up = True
        self._pending: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._wake_flusher = threading.Condition(self._lock)
        self._wake_shipper = threading.Event()
        self._stopping = threading.Event()
        self._recorded_seq = 0  # records handed to record()
        self._spooled_seq = 0  # of which written to the spool
        self._shipped_seq = 0  # of which shipped (own spool only)
        self._unshipped_ids: set[str] = set()
        self._unshipped_bytes = 0
        self._threads: list[threading.Thread] = []
        self._temporary: Path | None = None
        self.spool: SpoolDir | None = None
        self._writer: SpoolWriter | None = None
        self._adopted: list[SpoolDir] = []
        self._next_prune = 0.0
        self._next_adoption = 0.0
        self._stop_deadline = float("inf")

    # ---------------------------------------------------------------- rows
    def row(self, *, prediction_id: str, request_id: str, text: str, cleaned_length: int,
            label: str, confidence: float, probabilities: dict[str, float], model_version: str,
            latency_ms: float, created_at: datetime | None = None, key_id: str | None = None) -> dict:
        return {"created_at": created_at or now(), "prediction_id": prediction_id, "request_id": request_id,
                "text": text if self.settings.log_text else None, "text_sha256": text_sha256(text),
                "cleaned_length": cleaned_length, "label": label, "confidence": confidence,
                "probabilities": probabilities, "model_version": model_version, "latency_ms": latency_ms,
                "key_id": key_id}

    # ---------------------------------------------------------------- state
    @property
    def spool_bytes(self) -> int:
        return self._unshipped_bytes

    @property
    def over_budget(self) -> bool:
        """The spool holds ``spool_max_bytes`` or more: the database has been away too long."""
        return self._unshipped_bytes >= self.settings.spool_max_bytes

    @property
    def accepting(self) -> bool:
        """False when a new prediction must be refused (spool full and ``overflow: reject``)."""
        return not (self.over_budget and self.settings.overflow == "reject")

    def spooled(self, prediction_id: str) -> bool:
        """The prediction was answered by this process and is not in the database yet."""
        return prediction_id in self._unshipped_ids

    # ---------------------------------------------------------------- writing
    async def record(self, rows: list[dict]) -> None:
        await self._record([("p", row) for row in rows])

    async def record_feedback(self, prediction_id: str, label: str, key_id: str | None = None) -> None:
        await self._record([("f", {"created_at": now(), "prediction_id": prediction_id, "label": label,
                                   "feedback_id": new_id(), "key_id": key_id})])

    async def _record(self, records: list[tuple[str, dict]]) -> None:
        if self.over_budget and self.settings.overflow == "drop":
            self.dropped += len(records)
            return
        with self._lock:
            self._pending.extend(records)
            self._recorded_seq += len(records)
            self._unshipped_ids.update(row["prediction_id"] for kind, row in records if kind == "p")
            backlog = len(self._pending)
        if backlog >= self.settings.queue_size:  # the disk is slower than the traffic: wait (a while)
            target, deadline = self._recorded_seq, time.monotonic() + BACKPRESSURE_SECONDS
            while self._spooled_seq < target and not self._stopping.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(self.settings.flush_seconds / 2)

    def start(self) -> None:
        root = self.settings.spool_dir
        if root is None:
            self._temporary = root = Path(tempfile.mkdtemp(prefix="sentiment-spool-"))
        self.spool = SpoolDir.create(root)
        self._writer = SpoolWriter(self.spool, self.settings.segment_bytes)
        self._adopted = SpoolDir.adopt_orphans(root, exclude={self.spool.path})
        self._next_adoption = time.monotonic() + ADOPT_EVERY_SECONDS
        left = sum(d.pending_bytes() for d in self._adopted)
        self._unshipped_bytes = left
        if self._adopted:
            log.info("prediction log: shipping %d byte(s) spooled by %d earlier process(es)", left, len(self._adopted))
        self._threads = [threading.Thread(target=self._flush_loop, name="prediction-log-spool", daemon=True),
                         threading.Thread(target=self._ship_loop, name="prediction-log-shipper", daemon=True)]
        for thread in self._threads:
            thread.start()

    def _flush_loop(self) -> None:
        while True:
            try:
                if self._flush_once():
                    return
            except Exception:  # a bug must not silently stop the log: say it, keep going
                log.exception("prediction log: the spool writer failed; retrying in 1 s")
                time.sleep(1.0)

    def _serialised(self, batch: list[tuple[str, dict]]) -> list[bytes]:
        lines = []
        for kind, row in batch:
            try:
                lines.append(orjson.dumps({"k": kind, "r": row}))
            except TypeError as exc:  # a value JSON cannot hold: this record can never be logged
                self.refused += 1
                log.error("prediction log: a %s record cannot be written: %s", kind, exc)
        return lines

    def _flush_once(self) -> bool:
        """One group commit; True once stopping and nothing is left."""
        assert self._writer is not None
        while True:
            with self._lock:
                if not self._pending and not self._stopping.is_set():
                    self._wake_flusher.wait(self.settings.flush_seconds)
                batch, self._pending = self._pending, []
            if batch:
                lines = self._serialised(batch)
                try:
                    written = self._writer.append(lines)
                except OSError as exc:  # a full or failing disk: keep the rows, try again
                    log.error("prediction log: the spool %s cannot be written: %s", self._writer.spool.path, exc)
                    with self._lock:
                        self._pending[:0] = batch
                    time.sleep(1.0)
                    continue
                with self._lock:
                    self._spooled_seq += len(batch)
                    self._unshipped_bytes += written
                self._wake_shipper.set()
            elif self._stopping.is_set():
                return True
            else:
                time.sleep(self.settings.flush_seconds)  # group commit: one fsync per interval

    def _adopt_if_due(self) -> None:
        """Adopt spools left since start-up by processes that are gone (start() adopts those left
        before); runs on the shipper thread, the only one that walks ``_adopted`` while serving."""
        if self.spool is None or time.monotonic() < self._next_adoption:
            return
        self._next_adoption = time.monotonic() + ADOPT_EVERY_SECONDS
        known = {self.spool.path, *(d.path for d in self._adopted)}
        found = SpoolDir.adopt_orphans(self.spool.path.parent, exclude=known)
        if found:
            left = sum(d.pending_bytes() for d in found)
            with self._lock:
                self._unshipped_bytes += left
            self._adopted.extend(found)
            log.info("prediction log: shipping %d byte(s) spooled by %d process(es) that stopped", left, len(found))

    def _prune_if_due(self) -> None:
        days = self.settings.retention_days
        if days is None or not self.database_up or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        try:
            removed = prune(self.engine, timedelta(days=days))
        except Exception as exc:  # the database went away meanwhile: the next round tries again
            log.warning("prediction log: pruning rows older than %s day(s) failed: %s", days, str(exc).splitlines()[0])
            return
        if any(removed):
            log.info("prediction log: pruned %d prediction(s) and %d feedback row(s) older than %s day(s)",
                     *removed, days)

    def _ship_loop(self) -> None:
        while True:
            try:
                if self._ship():
                    return
            except Exception:  # a bug or a failing disk must not silently stop shipping
                log.exception("prediction log: the shipper failed; retrying in 1 s")
                self.database_up = False
                time.sleep(1.0)

    def _decoded(self, lines: list[bytes]) -> list[dict]:
        records = []
        for line in lines:
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:  # a damaged line (e.g. from a failing disk): skip it, say so
                self.refused += 1
                log.error("prediction log: a damaged spool record was skipped: %r", line[:80])
        return records

    def _ship(self) -> bool:
        """Ship until stopped; True when done."""
        assert self.spool is not None
        backoff = 0.1
        while True:
            if self._stopping.is_set() and time.monotonic() > self._stop_deadline:
                return True  # what is left stays spooled for the next start
            self._prune_if_due()
            self._adopt_if_due()
            progressed = False
            for spool in [*self._adopted, self.spool]:
                records, position = spool.read(self.settings.batch_size)
                if not records:
                    if position != spool.position:  # skipped an unfinished record
                        spool.checkpoint(position)
                    continue
                decoded = self._decoded(records)
                try:
                    self._insert(decoded)
                except Exception as exc:  # the database is away: keep the records, try again
                    if self.database_up:
                        log.warning("prediction log: database unreachable (%s); spooling to %s until it is back",
                                    str(exc).splitlines()[0], spool.path.parent)
                    self.database_up = False
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, 2.0)
                    break
                if not self.database_up:
                    log.info("prediction log: database back; shipping the spool")
                self.database_up, backoff, progressed = True, 0.1, True
                shipped_bytes = (sum(len(line) + 1 for line in records))
                spool.checkpoint(position)
                with self._lock:
                    self._unshipped_bytes = max(self._unshipped_bytes - shipped_bytes, 0)
                    self.shipped += len(records)
                    if spool is self.spool:
                        self._shipped_seq += len(records)
                        for record in decoded:
                            self._unshipped_ids.discard(record["r"].get("prediction_id"))
            self._adopted = [d for d in self._adopted if not (d.pending_bytes() == 0 and d.release())]
            if not progressed:
                if self._stopping.is_set() and (not self.database_up or self._shipped_seq >= self._spooled_seq):
                    return True
                self._wake_shipper.wait(0.2)
                self._wake_shipper.clear()

    def _insert(self, records: list[dict]) -> None:
        rows: dict[str, list[dict]] = {"p": [], "f": []}
        for record in records:
            row = record["r"]
            row["created_at"] = datetime.fromisoformat(row["created_at"])
            rows[record["k"]].append(row)
        statements = [(predictions, rows["p"], "prediction_id"), (feedback, rows["f"], "feedback_id")]
        try:
            with self.engine.begin() as connection:
                for table, batch, key in statements:
                    if batch:
                        connection.execute(_insert_ignoring_duplicates(connection, table, key), batch)
        except _ROW_REFUSED as exc:
            if len(records) == 1:
                self.refused += 1
                log.error("prediction log: a %s row was refused by the database and is not logged: %s",
                          "prediction" if rows["p"] else "feedback", str(exc).splitlines()[0])
                return
            # one bad row must not cost the other rows of its batch: write them one by one
            log.warning("prediction log: a batch of %d was refused (%s); writing row by row",
                        len(records), str(exc).splitlines()[0])
            for table, batch, key in statements:
                for row in batch:
                    try:
                        with self.engine.begin() as connection:
                            connection.execute(_insert_ignoring_duplicates(connection, table, key), [row])
                    except _ROW_REFUSED as row_error:
                        self.refused += 1
                        log.error("prediction log: %s %s not written: %s", table.name, row["prediction_id"],
                                  str(row_error).splitlines()[0])

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything recorded so far is in the database (True), or ``timeout``
        seconds have passed (False)."""
        target = self._recorded_seq
        with self._lock:
            self._wake_flusher.notify()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._shipped_seq < target:
            if deadline is not None and time.monotonic() > deadline:
                return False
            self._wake_shipper.set()
            await asyncio.sleep(0.005)
        return True

    async def close(self) -> None:
        """Spool what is pending, ship for up to ``drain_seconds``, stop; what is left stays in
        the spool for the next start."""
        drained = await self.flush(self.settings.drain_seconds)
        self._stop_deadline = time.monotonic() + 1.0  # the shipper finishes its batch, then stops
        self._stopping.set()
        with self._lock:
            self._wake_flusher.notify()
        self._wake_shipper.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 30.0)
        left = 0
        if self._writer is not None:
            self._writer.close()
        for spool in [*self._adopted, *([self.spool] if self.spool else [])]:
            left += spool.pending_bytes()
            spool.release()
        if self._temporary is not None and left == 0:
            shutil.rmtree(self._temporary, ignore_errors=True)
        self.engine.dispose()
        if drained and left == 0:
            log.info("prediction log closed: %d row(s) written", self.shipped)
        else:
            log.warning("prediction log closed: %d row(s) written, %d byte(s) left in the spool %s for the next start",
                        self.shipped, left, self.settings.spool_dir)

    # ---------------------------------------------------------------- feedback
    def prediction_exists(self, prediction_id: str) -> bool:
        with self.engine.connect() as connection:
            found = connection.execute(select(predictions.c.id).where(
                predictions.c.prediction_id == prediction_id)).first()
        return found is not None


def prune(engine: Engine, older_than: timedelta, batch_rows: int = 10_000) -> tuple[int, int]:
    """Delete predictions and feedback created more than ``older_than`` ago, in batches of
    ``batch_rows`` (short transactions: the server keeps writing meanwhile); returns how many
    of each were deleted."""
    cutoff = now() - older_than
    deleted = {}
    for table in (feedback, predictions):
        total = 0
        while True:
            with engine.begin() as connection:
                ids = select(table.c.id).where(table.c.created_at < cutoff).limit(batch_rows).scalar_subquery()
                done = connection.execute(delete(table).where(table.c.id.in_(ids))).rowcount
            total += done
            if done < batch_rows:
                break
        deleted[table.name] = total
    return deleted["predictions"], deleted["feedback"]


def _insert_ignoring_duplicates(connection, table: Table, key: str):
    """INSERT that skips rows whose ``key`` is already there: shipping twice writes once."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table).on_conflict_do_nothing(index_elements=[key])
    if connection.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])
    return insert(table)  # pragma: no cover - connect() makes SQLite and PostgreSQL engines


def labelled_rows(engine: Engine, key_ids: set[str] | None = None) -> Iterator[dict]:
    """(text, label) of every prediction that received feedback; the newest label wins. With
    ``key_ids`` only the labels written with those API keys count (a label written with no key,
    while access control was off, is left out): another key's newer label does not hide theirs."""
    query = (select(predictions.c.prediction_id, predictions.c.text, feedback.c.label, feedback.c.id,
                    feedback.c.key_id)
             .join(feedback, feedback.c.prediction_id == predictions.c.prediction_id)
             .order_by(feedback.c.id))
    if key_ids is not None:
        query = query.where(feedback.c.key_id.in_(sorted(key_ids)))
    latest: dict[str, dict] = {}
    with engine.connect() as connection:
        for row in connection.execute(query):
            latest[row.prediction_id] = {"prediction_id": row.prediction_id, "text": row.text,
                                         "label": row.label, "key_id": row.key_id}
    yield from latest.values()


def export_feedback(engine: Engine, target: Path, key_ids: set[str] | None = None) -> tuple[int, int]:
    """Write the labelled predictions as a (text, label) CSV that ``download`` reads with
    ``source: file`` (only the labels written with ``key_ids``, when given); returns (rows
    written, rows without stored text)."""
    import pandas as pd

    from sentiment_pipeline.core.errors import DataError
    from sentiment_pipeline.core.files import write_csv

    rows = list(labelled_rows(engine, key_ids))
    kept = [{"text": row["text"], "label": row["label"]} for row in rows if row["text"] is not None]
    if rows and not kept:
        raise DataError(f"{len(rows)} prediction(s) have feedback, but none has its text stored "
                        "(serve.log_text was false); only their SHA-256 is in the log")
    write_csv(pd.DataFrame(kept, columns=["text", "label"]), target)
    return len(kept), len(rows) - len(kept)
