"""Plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs more per request than the
model call."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentiment_pipeline.serving.errors import error_response
from sentiment_pipeline.serving.metrics import ServiceMetrics


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
