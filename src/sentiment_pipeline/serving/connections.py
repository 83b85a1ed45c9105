"""How many connections each worker of a server holds, shared between them so that new
connections are spread evenly.

The workers of a multi-worker server accept from one listening socket, and each is woken for
every new connection: whichever calls ``accept`` first takes it. A burst of connections (a
client's pool, a load balancer, wrk) went mostly to whichever worker happened to be running:
20 connections split 16/4, 13/7 or 10/10 between two workers (measured with ``ss`` during
``make bench-serve``). The busier worker then answered with up to four times the latency of the
other, and set the server's p99.

Each worker holds a slot (its pid and its open connections) in a small file the supervisor
creates in the server's own temporary directory, mapped into every worker's memory. A worker
about to accept, holding more connections than the least busy other worker, first leaves the
connection ``ACCEPT_WAIT`` seconds for that worker to take (``EventLoop`` in server.py), at most
``MAX_WAITS`` times in a row, none begun later than ``MAX_WAITS * ACCEPT_WAIT`` seconds after the
first. Workers that let a connection wait that long (busy, stopped, stuck) are not waited for
again until their counts move: one such connection is 3 ms late, the rest not at all.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections.abc import Iterable
from pathlib import Path

ENV = "SENTIMENT_SERVE_CONNECTIONS_FILE"  # set by the supervisor for its workers
SLOTS = 64  # serve.workers is at most 64
_SLOT = struct.Struct("<qq")  # pid (0: free), open connections
# Connections a worker may hold beyond the least busy other one. With 1, two clients' connections
# could both go to one worker (measured: 256-text requests from 2 clients, 9,200 -> 5,200 texts/s).
SLACK = 0
# From 16 connections a worker on, its share is balanced to within 1/16 of its count only. One
# connection more or less is then noise, and waiting is not free: under 1,000 connections
# (overload), every new one (a health probe) came when one worker held one more than the other,
# and was deferred for turns of a loop busy with hundreds of connections: /healthz max 1.2-2.1 s,
# against 39 ms with no waits (serve_bench's overload run).
RELATIVE_SLACK = 16
ACCEPT_WAIT = 0.001  # seconds a connection is left for a less busy worker
MAX_WAITS = 3  # in a row, none begun later than MAX_WAITS * ACCEPT_WAIT after the first (a busy loop's timers run late)


def create(path: Path) -> None:
    """The empty file of a server's slots (the supervisor, before starting its workers)."""
    path.write_bytes(bytes(SLOTS * _SLOT.size))


def forget(path: Path, pids: Iterable[int]) -> None:
    """Free the slots of workers that are gone (the supervisor, after a worker exited or died).
    Only those slots are written: the live workers write theirs at any time, unlocked."""
    gone = set(pids)
    if not gone:
        return
    try:
        with open(path, "r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # against a worker claiming a slot meanwhile
            data = handle.read()
            for offset in range(0, len(data) - _SLOT.size + 1, _SLOT.size):
                if _SLOT.unpack_from(data, offset)[0] in gone:
                    os.pwrite(handle.fileno(), bytes(_SLOT.size), offset)
    except FileNotFoundError:  # the server is stopping: its directory is gone
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process: alive
        return True
    return True


class ConnectionShares:
    """One worker's slot, and what it sees of the others'."""

    def __init__(self, path: Path, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.count = 0
        self.released = False
        with open(path, "r+b") as handle:
            # The map holds a duplicate of the descriptor, which would hold the lock as long:
            # it is released explicitly.
            self._map = mmap.mmap(handle.fileno(), SLOTS * _SLOT.size)
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                for slot in range(SLOTS):  # a free slot, or one a worker that is gone left behind
                    pid_in_slot = _SLOT.unpack_from(self._map, slot * _SLOT.size)[0]
                    if pid_in_slot == 0 or not _alive(pid_in_slot):
                        break
                else:
                    raise RuntimeError(f"{path}: no free slot for worker {self.pid} (more than {SLOTS} workers)")
                self._offset = slot * _SLOT.size
                _SLOT.pack_into(self._map, self._offset, self.pid, 0)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @classmethod
    def from_environment(cls) -> ConnectionShares | None:
        """The slot of this worker, when a supervisor set the file up (``serve.workers > 1``)."""
        path = os.environ.get(ENV)
        return cls(Path(path)) if path else None

    def _write(self) -> None:
        if not self.released:  # once released, the slot may be another worker's
            _SLOT.pack_into(self._map, self._offset, self.pid, self.count)

    def opened(self) -> None:
        self.count += 1
        self._write()

    def closed(self) -> None:
        self.count = max(self.count - 1, 0)
        self._write()

    def others(self) -> tuple[tuple[int, int], ...]:
        """The other workers' (pid, connections)."""
        return tuple((pid, count) for pid, count in _SLOT.iter_unpack(self._map) if pid and pid != self.pid)

    def fewest_elsewhere(self, others: tuple[tuple[int, int], ...] | None = None) -> int | None:
        """The fewest connections another worker holds (None: no other worker), from ``others``
        when the caller read them already."""
        counts = [count for _, count in (self.others() if others is None else others)]
        return min(counts) if counts else None

    def should_wait(self, others: tuple[tuple[int, int], ...] | None = None) -> bool:
        """This worker holds more connections than the least busy other one, by more than
        ``SLACK`` and more than a ``RELATIVE_SLACK``-th of its own."""
        fewest = self.fewest_elsewhere(others)
        return fewest is not None and self.count > fewest + max(SLACK, self.count // RELATIVE_SLACK)

    def release(self) -> None:
        """This worker no longer accepts: the others stop waiting for it."""
        if not self.released:
            self.released = True
            _SLOT.pack_into(self._map, self._offset, 0, 0)
