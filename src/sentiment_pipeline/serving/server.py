"""The HTTP server: uvicorn (httptools) run from the ``serve`` settings.

What uvicorn does not do by itself, added here:

- **a limit on a request's head** (request line and headers, ``serve.max_header_bytes``): over it,
  a 431 with a JSON body and the connection closed, instead of buffering whatever arrives;
- **read timeouts**: a request's head must be complete within ``serve.header_timeout_seconds`` of
  the connection's start or of its first byte (a connection that sends nothing is closed, a partial
  head gets a 408), and a body that stops arriving for ``serve.body_timeout_seconds`` gets a 408;
  idle keep-alive connections are closed after uvicorn's ``timeout_keep_alive`` as before;
- **a drain on shutdown**: uvicorn closes an idle keep-alive connection the moment it starts to
  shut down, and a request the client sent just then (it cannot know) is lost to a connection
  error; here the connection stays open ``serve.drain_idle_seconds`` for such a request, which is
  answered with ``Connection: close`` (the rolling-restart test under load saw such an error);
- **cheap refusals**: a prediction the app's ``Admission`` would refuse at once (over
  ``serve.max_inflight``) is answered its 503 as soon as its headers are parsed, and its connection
  is not read again before the ``Retry-After`` it was given;
- **an event loop that keeps accepting** (asyncio's, a few connections per turn: see ``EventLoop``)
  and TCP_NODELAY on every connection;
- **metrics of every worker**: with ``workers > 1`` each worker writes its Prometheus values to a
  fresh directory (prometheus-client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``) that
  ``/metrics`` reads as a whole; the supervisor marks workers that died (their live gauges go) and
  the directory is removed when the server stops.

The connection-level parts live in a small subclass of uvicorn's own httptools protocol (handed to
uvicorn as ``http=``), so parsing stays httptools' and everything else uvicorn's.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import shutil
import socket
import sys
import tempfile
from asyncio import TimerHandle, Transport
from asyncio.constants import ACCEPT_RETRY_DELAY
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools
from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors.multiprocess import Multiprocess

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.serving import connections
from sentiment_pipeline.serving.metrics import MULTIPROC_ENV
from sentiment_pipeline.serving.middleware import ADMISSION_STATE_KEY, Admission
from sentiment_pipeline.serving.schemas import ErrorDetail, ErrorResponse

log = logging.getLogger(__name__)

APP = "sentiment_pipeline.serving.app:app_from_environment"
CONNECTIONS_FILE = "connections"  # the workers' connection counts, beside their metrics (connections.py)


@dataclass(frozen=True)
class ConnectionLimits:
    """What a client may take of a connection before its request is complete."""

    max_header_bytes: int = 16_384
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    drain_idle_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: ServeConfig) -> ConnectionLimits:
        # uvicorn waits graceful_shutdown_seconds for connections to close: a longer drain would
        # only end in its "timeout graceful shutdown exceeded"
        return cls(settings.max_header_bytes, settings.header_timeout_seconds, settings.body_timeout_seconds,
                   min(settings.drain_idle_seconds, settings.graceful_shutdown_seconds))


class ServerConfig(Config):
    """uvicorn's ``Config`` with our protocol and its limits (pickled to every worker with it)."""

    def __init__(self, app: Any, *, limits: ConnectionLimits = ConnectionLimits(), **kwargs: Any) -> None:
        super().__init__(app, http=GuardedHttpToolsProtocol, **kwargs)
        self.limits = limits


def error_bytes(status: int, reason: str, error: str, field: str, message: str) -> bytes:
    """A complete HTTP response closing the connection, its body the API's ``ErrorResponse``."""
    body = ErrorResponse(error=error, details=[ErrorDetail(field=field, message=message)]).model_dump_json().encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing a head over the limit."""


class _NoEvent:
    def set(self) -> None:
        pass


class _Refused:
    """Stands in for the ASGI cycle of a request the protocol refused itself: answered already,
    so its body (if any) is parsed and dropped as uvicorn drops the rest of an answered request."""

    response_started = response_complete = True
    disconnected = more_body = False
    message_event = _NoEvent()


REFUSED: Any = _Refused()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a limit on the request head and read timeouts.

    A request's head is counted twice over: the bytes received while it is incomplete (httptools
    buffers a header until it ends, so a 16 MB header would otherwise be held whole), and, once
    parsed, the request line and headers exactly. One timer per connection: the head's deadline
    while a head is awaited, the body's idle timeout while a body is (not while uvicorn itself
    paused reading because the app has not consumed what arrived)."""

    def __init__(self, config: Config, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits: ConnectionLimits = getattr(config, "limits", None) or ConnectionLimits()
        self.max_header_bytes = limits.max_header_bytes
        self.header_timeout = limits.header_timeout_seconds
        self.body_timeout = limits.body_timeout_seconds
        self.drain_idle = limits.drain_idle_seconds
        self._draining = False      # the server is shutting down: no request after the next one
        self._in_head = True        # awaiting or reading a request's head
        self._head_received = 0     # bytes received while in the head
        self._head_parsed = 0       # request line and headers parsed so far
        self._timer: TimerHandle | None = None
        self._timer_kind: str | None = None

    # -- timers
    def _arm(self, kind: str, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer, self._timer_kind = self.loop.call_later(seconds, callback), kind

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_kind = None

    def _count_refusal(self, reason: str) -> None:
        """One more ``sentiment_connection_refusals{reason}`` (once the app started: its metrics)."""
        admission: Admission | None = self.app_state.get(ADMISSION_STATE_KEY)
        metrics = admission.metrics if admission is not None else None
        if metrics is not None:
            metrics.connection_refusals.labels(reason).inc()

    def _head_timed_out(self) -> None:
        self._timer = self._timer_kind = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # a pipelined head behind a response still being written: give that one time first
            self._arm("head", self.header_timeout, self._head_timed_out)
            return
        self._count_refusal("head_timeout")
        if self._head_received:
            self.transport.write(error_bytes(408, "Request Timeout", "request timeout", "headers",
                                             f"the request's headers took longer than serve.header_timeout_seconds="
                                             f"{self.header_timeout:g}"))
        self.transport.close()  # a connection that never sent a byte is closed without a word

    def _body_timed_out(self) -> None:
        self._timer = self._timer_kind = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or not cycle.more_body:
            return
        if self.flow.read_paused:  # our own back-pressure, not the client's stall
            self._arm("body", self.body_timeout, self._body_timed_out)
            return
        self._count_refusal("body_timeout")
        if not cycle.response_started:
            self.transport.write(error_bytes(408, "Request Timeout", "request timeout", "body",
                                             f"no part of the body arrived for serve.body_timeout_seconds="
                                             f"{self.body_timeout:g}"))
        # the app, waiting for the body, is told the client is gone; what it answers goes nowhere
        cycle.disconnected = True
        cycle.message_event.set()
        self.transport.close()

    def _drain_timed_out(self) -> None:
        self._timer = self._timer_kind = None
        if not self.transport.is_closing() and self._idle():
            self.transport.close()

    def _idle(self) -> bool:
        """No request on this connection: none being answered, no part of a head received."""
        return (self.cycle is None or self.cycle.response_complete) and not self._head_received

    # -- the connection
    def shutdown(self) -> None:
        """The server starts to shut down. A request being answered gets ``Connection: close``
        (as uvicorn does), and so does one whose head is arriving (uvicorn would close it unread;
        its head timeout stays, and uvicorn's graceful_shutdown_seconds bounds it). An idle
        connection, which uvicorn closes at once, is kept open up to ``drain_idle`` for a request
        the client may have sent meanwhile, then closed; one refused a moment ago is closed at
        once, its client waiting out the Retry-After it was given."""
        self._draining = True
        if self.transport.is_closing():
            return
        if self.cycle is REFUSED and self.flow.read_paused:
            self.transport.close()
        elif self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif self._head_received:
            pass  # on_headers_complete sees _draining
        elif self.drain_idle <= 0:
            self.transport.close()
        else:
            self._unset_keepalive_if_required()  # uvicorn's keep-alive timer; the drain's replaces it
            self._arm("drain", self.drain_idle, self._drain_timed_out)

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # asyncio sets TCP_NODELAY only on sockets it knows to be TCP, and a worker's listening
        # socket, inherited from the supervisor, reports protocol 0: without it every response
        # (headers and body written apart) waited for the client's delayed ACK, 40 ms.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - the connection is already gone
                pass
        self._arm("head", self.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        shares = getattr(self.loop, "connection_shares", None)
        if shares is not None:  # counted by the loop's accept (EventLoop)
            shares.closed()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with the head's limit and the timers
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse_head()
            else:
                self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # A complete request on its own costs no timer; a partial one arms (or keeps) one.
        if self._in_head:
            if self._head_received > self.max_header_bytes:
                self._refuse_head()
            elif self._head_received and self._timer_kind != "head":
                self._arm("head", self.header_timeout, self._head_timed_out)
        elif self.cycle is not None and self.cycle.more_body and not self.cycle.response_complete:
            self._arm("body", self.body_timeout, self._body_timed_out)  # re-armed by every part of a body

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self._count_refusal("bad_request")
        self._disarm()
        self.send_400_response(msg)

    def _refuse_head(self) -> None:
        self._disarm()
        self._count_refusal("head_too_large")
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a response is being written: a 431 cannot follow it
            return
        self.transport.write(error_bytes(431, "Request Header Fields Too Large", "request headers too large",
                                         "headers", f"the request line and headers are over serve.max_header_bytes="
                                                    f"{self.max_header_bytes}"))
        self.transport.close()

    # -- parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_parsed = True, 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_parsed += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_parsed += len(name) + len(value) + 4
        if self._head_parsed > self.max_header_bytes:
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_parsed > self.max_header_bytes:
            raise _HeadTooLarge
        self._in_head, self._head_received = False, 0
        if self._timer_kind == "head":
            self._disarm()
        admission: Admission | None = self.app_state.get(ADMISSION_STATE_KEY)
        if admission is not None and (self.cycle is None or self.cycle.response_complete):
            raw_path = self.url.partition(b"?")[0]
            if admission.refuses_now(raw_path):
                self._refuse(admission, raw_path)
                return
        super().on_headers_complete()
        if self._draining:
            self.cycle.keep_alive = False  # answered with Connection: close, then closed

    def _resume_after_refusal(self) -> None:
        if not self.transport.is_closing():
            self.flow.resume_reading()

    def _refuse(self, admission: Admission, raw_path: bytes) -> None:
        """Answer the 503 of ``Admission`` here and now: under overload refusals are most of the
        work, and this costs a fraction of a request through the app."""
        admission.count_refusal(self.parser.get_method().decode("ascii"), raw_path.decode("ascii"))
        self.cycle = REFUSED
        if not self._draining and self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive():
            self.transport.write(admission.refusal)
            self.on_response_complete()  # keep-alive timer, pipelined requests: as after any response
            # The client was told to retry after Retry-After: its next request on this connection
            # is read no sooner. Otherwise every connection of a client that retries at once (or a
            # benchmark) brings a refusal per turn of the event loop, and the turns, refusals only,
            # grow with the connections until nothing else, health checks included, gets its turn.
            self.flow.pause_reading()
            self.loop.call_later(admission.retry_after_seconds, self._resume_after_refusal)
        else:
            self.transport.write(admission.refusal_closing)
            self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next request's head, whenever it comes (the keep-alive timeout until then)
        if self._timer_kind == "body":
            self._disarm()


class EventLoop(asyncio.SelectorEventLoop):
    """asyncio's event loop, accepting at most ``ACCEPTS_PER_TURN`` connections per turn, and
    (with several workers) leaving a new connection briefly to a less busy worker.

    Not uvloop: under load uvloop accepts one connection per turn of its loop, so a health check
    on a new connection waited behind every connection queued before it (3 to 10 s at 1,000
    connections, measured). asyncio accepts up to the listen backlog (2,048) per turn instead: one
    worker took a whole burst of connections (all 20 of wrk's, measured), leaving the other idle,
    and spent a long turn setting them up. Four per turn, and even then 20 connections split
    16/4 as often as 10/10 between two workers, so the workers also share their connection
    counts (connections.py) and one holding more than the others waits before accepting."""

    ACCEPTS_PER_TURN = 4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection_shares: connections.ConnectionShares | None = None  # claimed once serving
        self._accept_waits = 0  # waits for the connection at the head of the queue
        self._first_wait = 0.0  # when the first of them began (loop time)
        self._unresponsive: tuple | None = None  # the others, as they were when they let one wait out
        self._accept_resume: dict[int, TimerHandle] = {}

    def _start_serving(self, protocol_factory: Any, sock: Any, sslcontext: Any = None, server: Any = None,
                       backlog: int = 100, *args: Any, **kwargs: Any) -> None:
        if self.connection_shares is None:
            # Not before: uvicorn starts serving once the app (the model) is loaded, and until then
            # the other workers would wait for a worker that cannot accept yet.
            self.connection_shares = connections.ConnectionShares.from_environment()
        super()._start_serving(protocol_factory, sock, sslcontext, server,  # type: ignore[misc]
                               min(backlog, self.ACCEPTS_PER_TURN), *args, **kwargs)

    def _accept_connection(self, protocol_factory: Any, sock: Any, *args: Any) -> None:
        """asyncio's, one connection at a time: each counted at once in this worker's share, and
        not taken while another worker holds fewer (up to ``MAX_WAITS`` waits in a row, none
        begun more than ``MAX_WAITS * ACCEPT_WAIT`` seconds after the first)."""
        backlog = args[2] if len(args) > 2 else 1
        for _ in range(backlog):
            if self._should_wait():
                if not self._accept_waits:
                    self._first_wait = self.time()
                self._accept_waits += 1
                self._remove_reader(sock.fileno())  # type: ignore[attr-defined]
                self._accept_resume[sock.fileno()] = self.call_later(
                    connections.ACCEPT_WAIT, self._resume_accepting, protocol_factory, sock, args)
                return
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                # nothing (more) to accept: another worker took it, so the waits for it are over
                # (left counting, they would make the next connection's first wait look overdue)
                self._accept_waits = 0
                return
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise  # the event loop logs it
                # out of descriptors or memory: as asyncio does, stop accepting for a while
                self.call_exception_handler({"message": "socket.accept() out of system resource",
                                             "exception": exc, "socket": sock})
                self._remove_reader(sock.fileno())  # type: ignore[attr-defined]
                self._accept_waits = 0  # a connection a second from now starts its waits afresh
                # kept with the waits' timers: a server stopped meanwhile cancels it (_stop_serving)
                self._accept_resume[sock.fileno()] = self.call_later(
                    ACCEPT_RETRY_DELAY, self._retry_serving, protocol_factory, sock, args)
                return
            conn.setblocking(False)
            self._accept_waits = 0
            if self.connection_shares is not None:
                self.connection_shares.opened()  # counted now: the protocol's connection_made comes a task later
            sslcontext, server = (args + (None, None))[:2]
            self.create_task(self._accept_connection2(  # type: ignore[attr-defined]
                protocol_factory, conn, {"peername": addr}, sslcontext, server, *args[3:]))

    def _should_wait(self) -> bool:
        shares = self.connection_shares
        if shares is None:
            return False
        others = shares.others()  # read once: the map changes under us
        if not shares.should_wait(others):
            return False
        if self._unresponsive is not None:
            if others == self._unresponsive:
                return False  # they did not take the last one in time, and have not moved since
            self._unresponsive = None
        if self._accept_waits < connections.MAX_WAITS and (
                not self._accept_waits or self.time() - self._first_wait < connections.MAX_WAITS * connections.ACCEPT_WAIT):
            return True  # (a loop busy with many connections runs its 1 ms timers late: the time bounds the waits too)
        self._unresponsive = others
        return False

    def _resume_accepting(self, protocol_factory: Any, sock: Any, args: tuple) -> None:
        self._accept_resume.pop(sock.fileno(), None)
        if sock.fileno() == -1:  # the server stopped listening meanwhile
            return
        self._add_reader(sock.fileno(), self._accept_connection, protocol_factory, sock, *args)  # type: ignore[attr-defined]
        if select.select([sock], [], [], 0)[0]:
            self._accept_connection(protocol_factory, sock, *args)  # still there: now, not a turn later
        else:
            self._accept_waits = 0  # another worker took it

    def _retry_serving(self, protocol_factory: Any, sock: Any, args: tuple) -> None:
        self._accept_resume.pop(sock.fileno(), None)
        self._start_serving(protocol_factory, sock, *args)

    def _stop_serving(self, sock: Any) -> None:
        resume = self._accept_resume.pop(sock.fileno(), None)
        if resume is not None:
            resume.cancel()
        if self.connection_shares is not None:
            self.connection_shares.release()  # no longer accepting: the others stop waiting for it
        super()._stop_serving(sock)  # type: ignore[misc]


class _Supervisor(Multiprocess):
    """uvicorn's worker supervisor, telling prometheus-client and the connection counts about workers it replaced."""

    def __init__(self, config: Config, sockets: list, metrics_dir: str) -> None:
        super().__init__(config, sockets)
        self.metrics_dir = metrics_dir
        self.connections_file = Path(metrics_dir) / CONNECTIONS_FILE  # created by run()

    def _mark_gone(self, before: set[int | None]) -> None:
        from prometheus_client import multiprocess

        gone = {pid for pid in before - {process.pid for process in self.processes} if pid is not None}
        for pid in gone:
            multiprocess.mark_process_dead(pid, self.metrics_dir)
        connections.forget(self.connections_file, gone)

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        self._mark_gone(before)

    def restart_all(self) -> None:
        before = {process.pid for process in self.processes}
        super().restart_all()
        self._mark_gone(before)


def server_config(settings: ServeConfig, app: Any = APP, log_level: str = "info", **overrides: Any) -> ServerConfig:
    """uvicorn's configuration for ``settings``: ``app`` an import string of an app factory (or,
    with ``factory=False`` in ``overrides``, an app: tests), ``overrides`` any other
    ``uvicorn.Config`` argument."""
    options: dict[str, Any] = {
        "factory": True, "host": settings.host, "port": settings.port, "workers": settings.workers,
        # uvicorn annotates int but only hands it to asyncio.wait_for, which takes a float
        "timeout_graceful_shutdown": settings.graceful_shutdown_seconds,
        "log_level": log_level, "access_log": False, "loop": f"{__name__}:EventLoop",
        # no WebSocket route: an upgrade request is plain HTTP (a 404), and its connection stays
        # ours, so its close is counted (connections.py)
        "ws": "none", **overrides}
    return ServerConfig(app, limits=ConnectionLimits.from_settings(settings), **options)


def run(settings: ServeConfig, app: str = APP, log_level: str = "info") -> None:
    """Serve ``app`` (an import string of an app factory) as ``settings`` say, until SIGINT/SIGTERM;
    what ``uvicorn.run`` does, with our protocol and, for several workers, their shared metrics."""
    config = server_config(settings, app, log_level)
    if config.workers == 1:
        config.load_app()  # an import error stops here, as uvicorn.run does
        server = Server(config)
        try:
            server.run()
        except KeyboardInterrupt:  # pragma: no cover - as uvicorn.run
            pass
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    metrics_dir = tempfile.mkdtemp(prefix="sentiment-metrics-")
    previous = {name: os.environ.get(name) for name in (MULTIPROC_ENV, connections.ENV)}
    os.environ[MULTIPROC_ENV] = metrics_dir  # read by the workers as they import prometheus_client
    connections_file = Path(metrics_dir) / CONNECTIONS_FILE
    connections.create(connections_file)
    os.environ[connections.ENV] = str(connections_file)  # read by each worker's EventLoop
    log.debug("worker metrics in %s", metrics_dir)
    try:
        sock = config.bind_socket()
        try:
            _Supervisor(config, [sock], metrics_dir).run()
        except KeyboardInterrupt:  # pragma: no cover - as uvicorn.run
            pass
        finally:
            sock.close()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
