"""A durable local spool in front of the prediction log's database.

Each serving process appends its records to its own directory of append-only JSON-lines
segments (``0000000001.jsonl``, ...), one ``write`` and one ``fsync`` per batch, and holds an
exclusive ``flock`` on the directory's ``lock`` file while it lives. A reader ships the records in
order and checkpoints how far it got in ``cursor.json`` (written to a temporary file, fsync'd,
renamed); fully shipped segments are deleted. A directory whose lock nobody holds belongs to a
process that died: the next process adopts it and ships what is left, so a restart loses
nothing that reached the disk. A killed writer can leave a partial last line: the reader of an
adopted directory skips it (it was never fsync'd, hence never promised).
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
READ_CHUNK = 1 << 20  # bytes read per batch at most (about 2,500 predictions)


@dataclass(frozen=True, order=True)
class Position:
    """Where the next unread record starts: segment number and byte offset in it."""

    segment: int
    offset: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolDir:
    """One process's directory of segments, locked by whoever writes or ships it."""

    def __init__(self, path: Path, lock_fd: int, owned: bool) -> None:
        self.path, self._lock_fd, self.owned = path, lock_fd, owned
        self.position = self._read_cursor()

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, root: Path) -> SpoolDir:
        """A new directory for this process under ``root``, locked."""
        root.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        # made and locked under a hidden name, then renamed: a worker starting at the same time
        # never sees it unlocked (it would adopt it as a dead process's)
        staging = root / f".{name}"
        staging.mkdir()
        fd = os.open(staging / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = root / name
        os.rename(staging, path)
        _fsync_dir(root)
        return cls(path, fd, owned=True)

    @classmethod
    def adopt_orphans(cls, root: Path, exclude: set[Path]) -> list[SpoolDir]:
        """The directories under ``root`` whose writer is gone (their lock is free), locked."""
        found: list[SpoolDir] = []
        if not root.is_dir():
            return found
        for path in sorted(p for p in root.iterdir() if p.is_dir() and p not in exclude and not p.name.startswith(".")):
            try:
                fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process holds it
                continue
            found.append(cls(path, fd, owned=False))
        return found

    def release(self, remove_if_empty: bool = True) -> bool:
        """Unlock; remove the directory when everything in it was shipped. True if removed."""
        removed = False
        if remove_if_empty and self.pending_bytes() == 0:
            shutil.rmtree(self.path, ignore_errors=True)
            removed = True
        os.close(self._lock_fd)
        return removed

    # ------------------------------------------------------------------ segments
    def segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.path.glob(f"*{SEGMENT_SUFFIX}") if p.stem.isdigit())

    def segment_path(self, number: int) -> Path:
        return self.path / f"{number:010d}{SEGMENT_SUFFIX}"

    def _read_cursor(self) -> Position:
        import orjson

        try:
            data = orjson.loads((self.path / "cursor.json").read_bytes())
            return Position(int(data["segment"]), int(data["offset"]))
        except FileNotFoundError:
            segments = self.segments()
            return Position(segments[0] if segments else 1, 0)

    def pending_bytes(self) -> int:
        """Bytes written and not yet shipped."""
        total = 0
        for number in self.segments():
            if number >= self.position.segment:
                size = self.segment_path(number).stat().st_size
                total += size - (self.position.offset if number == self.position.segment else 0)
        return max(total, 0)

    # ------------------------------------------------------------------ reading and checkpoints
    def read(self, max_records: int) -> tuple[list[bytes], Position]:
        """Up to ``max_records`` whole records from the cursor on, and where they end."""
        records: list[bytes] = []
        position = self.position
        segments = self.segments()
        while len(records) < max_records:
            path = self.segment_path(position.segment)
            later = [n for n in segments if n > position.segment]
            try:
                with open(path, "rb") as segment:
                    segment.seek(position.offset)
                    data = segment.read(READ_CHUNK)
            except FileNotFoundError:
                data = b""
            end = data.rfind(b"\n") + 1
            if end == 0:
                if not later:
                    if data and not self.owned and len(data) < READ_CHUNK:
                        log.warning("%s: %d byte(s) of a record its killed writer never finished; skipped",
                                    path, len(data))
                        position = Position(position.segment, position.offset + len(data))
                    break
                if data:  # a partial record at the end of a finished segment: the writer died
                    log.warning("%s: %d byte(s) of an unfinished record skipped", path, len(data))
                position = Position(later[0], 0)
                continue
            lines = data[:end].split(b"\n")[:-1]
            take = lines[:max_records - len(records)]
            records.extend(take)
            position = Position(position.segment, position.offset + sum(len(line) + 1 for line in take))
            if len(take) < len(lines):
                break
        return records, position

    def checkpoint(self, position: Position) -> None:
        """Remember that everything before ``position`` is shipped; delete finished segments."""
        import orjson

        staged = self.path / "cursor.json.tmp"
        with open(staged, "wb") as out:
            out.write(orjson.dumps({"segment": position.segment, "offset": position.offset}))
            out.flush()
            os.fsync(out.fileno())
        os.replace(staged, self.path / "cursor.json")
        self.position = position
        for number in self.segments():
            if number < position.segment:
                self.segment_path(number).unlink(missing_ok=True)


class SpoolWriter:
    """Appends batches of records to the segments of an owned ``SpoolDir``."""

    def __init__(self, spool: SpoolDir, segment_bytes: int = 16 << 20) -> None:
        assert spool.owned
        self.spool, self.segment_bytes = spool, segment_bytes
        segments = spool.segments()
        self.number = segments[-1] if segments else 1
        self._file = open(spool.segment_path(self.number), "ab")  # noqa: SIM115 - kept open
        self.size = self._file.tell()

    def append(self, records: list[bytes]) -> int:
        """Write the records (one line each) durably; returns the bytes written."""
        if self.size >= self.segment_bytes:
            self._file.close()
            self.number += 1
            self._file = open(self.spool.segment_path(self.number), "ab")  # noqa: SIM115
            self.size = 0
            _fsync_dir(self.spool.path)
        data = b"\n".join(records) + b"\n"
        try:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            # a full or failing disk: cut the segment back to its last whole record, so that a
            # retry of the same batch appends it once, after a clean line end
            self._file.close()
            with open(self.spool.segment_path(self.number), "r+b") as segment:
                segment.truncate(self.size)
            self._file = open(self.spool.segment_path(self.number), "ab")  # noqa: SIM115
            raise
        self.size += len(data)
        return len(data)

    def close(self) -> None:
        self._file.close()
