"""The workers' shared connection counts (serving/connections.py) and the event loop that waits
for a less busy worker before accepting (serving/server.py ``EventLoop``), in process: slots in
one file, an event loop in a thread. Two real workers sharing a burst of connections evenly:
tests/test_serving_overload.py."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from sentiment_pipeline.serving import connections
from sentiment_pipeline.serving.connections import ConnectionShares
from sentiment_pipeline.serving.server import EventLoop


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture()
def slots(tmp_path) -> Path:
    path = tmp_path / "connections"
    connections.create(path)
    return path


def test_a_worker_holding_more_connections_than_another_waits(slots):
    mine, other = ConnectionShares(slots), ConnectionShares(slots, pid=1)  # pid 1: alive, never ours
    assert mine.fewest_elsewhere() == 0 and not mine.should_wait()
    mine.opened()
    assert mine.should_wait() and not other.should_wait()
    other.opened()
    assert not mine.should_wait() and not other.should_wait()
    mine.closed(), mine.closed(), mine.closed()
    assert mine.count == 0  # never below zero
    other.release()  # the other stops accepting: nobody to wait for
    assert mine.fewest_elsewhere() is None and not mine.should_wait()


def test_from_16_connections_a_worker_balances_to_within_a_sixteenth(slots):
    """Exact below 16, where one more is a large share (a client's pool); within 1/16 from there
    and for hundreds, where one more is noise and waiting would only delay (overload)."""
    mine, other = ConnectionShares(slots), ConnectionShares(slots, pid=1)
    for _ in range(15):
        other.opened()
    for expected_wait in [False] * 16 + [True]:  # 16 against 15 is within 16 // 16 = 1; 17 waits
        mine.opened()
        assert mine.should_wait() is expected_wait, mine.count
    while other.count < 480:
        other.opened()
    while mine.count < 512:
        mine.opened()
    assert not mine.should_wait()  # 512 against 480: within 512 // 16 = 32
    mine.opened()
    assert mine.should_wait()  # 513 against 480


def test_slots_are_reused_once_their_worker_is_gone(slots):
    gone = ConnectionShares(slots, pid=dead_pid())
    gone.opened()
    replacement = ConnectionShares(slots)  # the dead worker's slot is free again
    assert replacement._offset == gone._offset and replacement.fewest_elsewhere() is None
    living = ConnectionShares(slots, pid=1)
    connections.forget(slots, [1])  # the supervisor saw it exit
    assert replacement.fewest_elsewhere() is None
    released = ConnectionShares(slots, pid=1)
    released.release()
    released.opened()  # a released slot is no longer written: it may be another worker's
    assert replacement.fewest_elsewhere() is None
    assert living.count == 0


def test_more_workers_than_slots_is_an_error_naming_the_file(slots):
    for _ in range(connections.SLOTS):
        ConnectionShares(slots, pid=1)
    with pytest.raises(RuntimeError, match=f"{slots}: no free slot"):
        ConnectionShares(slots, pid=1)


class Counting(asyncio.Protocol):
    def __init__(self, made: list[float]) -> None:
        self.made = made

    def connection_made(self, transport) -> None:
        self.made.append(time.monotonic())


def serving_loop(listener: socket.socket, shares: ConnectionShares | None, made: list[float],
                 ready: threading.Event) -> tuple[EventLoop, threading.Thread]:
    """An ``EventLoop`` in a thread of its own, accepting from ``listener`` (as a worker does)."""
    loop = EventLoop()
    loop.connection_shares = shares

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(loop.create_server(lambda: Counting(made), sock=listener))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return loop, thread


def stop(loop: EventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def listening() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.setblocking(False)
    return listener


def test_a_worker_that_lets_a_connection_wait_out_is_not_waited_for_again_until_it_moves(slots, monkeypatch):
    """The other worker's slot says it holds nothing, but it never accepts (stuck, or gone without
    its slot freed): the first connection waits MAX_WAITS times, the next ones not at all, until
    the other worker's count moves."""
    monkeypatch.setattr(connections, "ACCEPT_WAIT", 0.2)  # waits long enough to tell apart
    listener = listening()
    stuck = ConnectionShares(slots, pid=1)  # holds 0 connections, forever
    made: list[float] = []
    ready = threading.Event()
    loop, thread = serving_loop(listener, ConnectionShares(slots), made, ready)
    ready.wait(10)
    clients = []

    def delay_of_next_connection() -> float:
        started = time.monotonic()
        clients.append(socket.create_connection(listener.getsockname()))
        deadline = started + 10
        while len(made) < len(clients):
            assert time.monotonic() < deadline, f"connection {len(clients)} was not accepted"
            time.sleep(0.001)
        return made[-1] - started

    try:
        assert delay_of_next_connection() < 0.2  # 0 against 0
        assert delay_of_next_connection() >= 0.6  # 1 against 0: three waits, then accepted
        assert all(delay_of_next_connection() < 0.2 for _ in range(4))  # not waited for again
        stuck.opened()  # it moved: worth waiting for again
        assert delay_of_next_connection() >= 0.6
    finally:
        for client in clients:
            client.close()
        stop(loop, thread)
        listener.close()


def test_a_server_closed_while_a_connection_waits_stops_accepting(slots, monkeypatch):
    """The server stops listening while its loop leaves a connection to another worker: the
    wait's timer is cancelled, the closed socket is not registered again, and the worker's slot is
    released (the others stop waiting for it)."""
    monkeypatch.setattr(connections, "ACCEPT_WAIT", 5.0)
    listener = listening()
    other = ConnectionShares(slots, pid=1)
    shares = ConnectionShares(slots)
    shares.opened()  # 1 against 0: it waits
    made: list[float] = []
    ready = threading.Event()
    errors: list[dict] = []
    loop, thread = serving_loop(listener, shares, made, ready)
    loop.set_exception_handler(lambda _, context: errors.append(context))
    ready.wait(10)
    client = socket.create_connection(listener.getsockname())
    try:
        deadline = time.monotonic() + 10
        while not loop._accept_resume:  # the connection is waiting
            assert time.monotonic() < deadline
            time.sleep(0.005)
        resume = next(iter(loop._accept_resume.values()))
        loop.call_soon_threadsafe(loop._stop_serving, listener)
        while listener.fileno() != -1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.05)
        assert resume.cancelled() and not loop._accept_resume and not errors and not made, errors
        assert shares.released and other.others() == ()  # its slot is free: nobody waits for it
    finally:
        client.close()
        stop(loop, thread)


def test_the_waits_are_bounded_in_time_when_the_loop_is_busy(slots):
    """A loop busy with many connections runs its 1 ms timers late: counted in turns, three waits
    deferred a new connection (a health probe) for three long turns (/healthz 1.4 s at 1,000
    connections, measured). Here every turn takes 10 ms, and the first wait already outlasts
    MAX_WAITS * ACCEPT_WAIT (3 ms): the connection is accepted after one wait, not three."""
    listener = listening()
    stuck = ConnectionShares(slots, pid=1)  # holds 0 connections, never accepts
    shares = ConnectionShares(slots)
    shares.opened()  # 1 against 0: it waits
    made: list[float] = []
    ready = threading.Event()
    loop, thread = serving_loop(listener, shares, made, ready)
    ready.wait(10)
    waits: list[int] = []
    resume = loop._resume_accepting

    def counted(*args) -> None:
        resume(*args)
        waits.append(shares.count)  # the connection is accepted by the wait's end, not a turn later

    def busy() -> None:  # a turn of 10 ms, every turn
        time.sleep(0.01)
        loop.call_soon(busy)

    loop._resume_accepting = counted
    loop.call_soon_threadsafe(busy)
    client = socket.create_connection(listener.getsockname())
    try:
        deadline = time.monotonic() + 10
        while not made:
            assert time.monotonic() < deadline, "not accepted"
            time.sleep(0.005)
        assert waits == [2] and stuck.count == 0
    finally:
        client.close()
        stop(loop, thread)
        listener.close()


def test_a_connection_another_worker_took_meanwhile_ends_the_waits(slots):
    """Waiting, the worker finds the connection gone (the other worker took it): the waits are
    over. Left counting, the next connection's first wait looked overdue and was skipped."""
    loop = EventLoop()
    loop._accept_waits, loop._first_wait = 2, loop.time() - 60

    class Taken:
        def accept(self):
            raise BlockingIOError

    try:
        loop._accept_connection(Counting, Taken(), None, None, 4)
        assert loop._accept_waits == 0
    finally:
        loop.close()
