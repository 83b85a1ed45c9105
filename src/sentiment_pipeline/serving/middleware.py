"""Plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs more per request than the
model call."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentiment_pipeline.serving.errors import error_response
from sentiment_pipeline.serving.metrics import ServiceMetrics
from sentiment_pipeline.serving.schemas import ErrorDetail, ErrorResponse


def _settle(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


ADMISSION_STATE_KEY = "sentiment_pipeline.admission"


class Admission:
    """At most ``max_inflight`` requests to ``paths`` (the model's) at once; one more waits up to
    ``wait_ms`` for a slot (at most ``max_inflight`` of them wait), then is refused at once with a
    503 (JSON ``ErrorResponse``, ``Retry-After``), before its body is read. Every other path (health,
    readiness, metrics) is never counted or refused.

    Beyond the limit a request could only queue behind the others, answered late (clients and load
    balancers time out) while its wait delays the ones ahead of it; refused at once, its client retries
    elsewhere or later, and the requests admitted keep their latency. Per worker: each process
    admits its own ``max_inflight``.

    Under overload the refusals are most of the work, so they must cost next to nothing: at
    start-up the instance puts itself into the lifespan state, where our HTTP protocol
    (``server.py``) finds it and refuses a request that would be refused at once as soon as its
    headers are parsed, with :attr:`refusal` (no task, no ASGI call). Here, the same refusal for
    any other server (tests, another ASGI server)."""

    def __init__(self, app: ASGIApp, max_inflight: int, wait_ms: float = 0.0,
                 paths: Iterable[str] = ("/v1/predict",), retry_after_seconds: int = 1) -> None:
        self.app, self.max_inflight, self.wait = app, max_inflight, wait_ms / 1000
        self.retry_after_seconds = retry_after_seconds
        self.paths = frozenset(paths)
        self.raw_paths = frozenset(path.encode() for path in self.paths)
        self.inflight = 0
        self.waiting: deque[asyncio.Future[bool]] = deque()
        self._app_state: Any = None  # the app's state: its metrics, once it started
        self._shed_counters: dict[tuple[str, str], tuple] = {}
        body = ErrorResponse(error="overloaded: too many requests in flight", details=[ErrorDetail(
            field="service", message=f"more than serve.max_inflight={max_inflight} requests at once; "
                                     f"retry after {retry_after_seconds} s")]).model_dump_json().encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"retry-after", str(retry_after_seconds).encode())]
        # built once: refusing must cost far less than answering
        self._start: Message = {"type": "http.response.start", "status": 503, "headers": headers}
        self._body: Message = {"type": "http.response.body", "body": body}
        head = b"HTTP/1.1 503 Service Unavailable\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
        self.refusal = head + b"\r\n" + body  # the whole response, keep-alive
        self.refusal_closing = head + b"connection: close\r\n\r\n" + body

    def refuses_now(self, raw_path: bytes) -> bool:
        """A request for ``raw_path`` arriving now would be refused without waiting."""
        return (raw_path in self.raw_paths and self.inflight >= self.max_inflight
                and (self.wait <= 0 or len(self.waiting) >= self.max_inflight))

    def count_refusal(self, method: str, path: str) -> None:
        if self.metrics is None:
            return
        counters = self._shed_counters.get((method, path))
        if counters is None:
            counters = self._shed_counters[(method, path)] = (
                self.metrics.shed.labels(path), self.metrics.requests.labels(method, path, "503"))
        for counter in counters:
            counter.inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            if scope["type"] == "lifespan":
                self._lifespan(scope)
            await self.app(scope, receive, send)
            return
        if self._app_state is None:
            self._app_state = getattr(scope.get("app"), "state", None)
        if self.inflight < self.max_inflight:
            self.inflight += 1
        elif not await self._wait_for_slot():
            self.count_refusal(scope["method"], scope["path"])
            await send(self._start)
            await send(self._body)
            return
        gauge = self.metrics.in_flight if self.metrics is not None else None
        if gauge is not None:
            gauge.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            if gauge is not None:
                gauge.dec()
            self._release()

    @property
    def metrics(self) -> ServiceMetrics | None:
        return getattr(self._app_state, "metrics", None)

    def _lifespan(self, scope: Scope) -> None:
        state = scope.get("state")
        if state is not None:  # the server's lifespan state, which uvicorn hands every connection
            state[ADMISSION_STATE_KEY] = self
        if "app" in scope:
            self._app_state = scope["app"].state

    async def _wait_for_slot(self) -> bool:
        """Whether a slot was handed over within the wait (the slot is then this request's)."""
        if self.wait <= 0 or len(self.waiting) >= self.max_inflight:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self.waiting.append(waiter)
        timer = loop.call_later(self.wait, _settle, waiter, False)
        try:
            admitted = await waiter
        except asyncio.CancelledError:  # the client went away
            timer.cancel()
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._release()  # a slot handed over meanwhile goes on to the next
            else:
                self._forget(waiter)
            raise
        timer.cancel()
        if not admitted:
            self._forget(waiter)
        return admitted

    def _forget(self, waiter: asyncio.Future[bool]) -> None:
        try:
            self.waiting.remove(waiter)
        except ValueError:
            pass

    def _release(self) -> None:
        """Hand the slot to the longest waiting request, else free it."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self.inflight -= 1


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with a 413 before they are parsed: by the declared
    Content-Length, or, for a body sent without one, after reading at most ``max_bytes + 1``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self.too_large()(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # Chunked: buffer (bounded), then replay the body to the app.
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self.too_large()(scope, receive, send)
                return
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def too_large(self) -> ASGIApp:
        return error_response(413, f"request body over serve.max_body_bytes={self.max_bytes}",
                              [("body", "send less, or split the texts over several requests")])


class RequestMetrics:
    """Count requests by route and status and time them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            metrics: ServiceMetrics | None = getattr(scope["app"].state, "metrics", None)
            if metrics is not None:
                path = getattr(scope.get("route"), "path", "unmatched")
                metrics.requests.labels(scope["method"], path, str(status)).inc()
                metrics.latency.labels(path).observe(time.perf_counter() - started)
