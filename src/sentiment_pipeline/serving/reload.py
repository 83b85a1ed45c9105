"""Hot reload: the served model replaced without refusing or failing a request.

The new ``models/final`` is verified against ``dvc.lock`` and its compiled path checked against
scikit-learn (``Predictor.load``), then warmed up, all off the event loop. The swap is one
synchronous assignment of the predictor and its micro-batcher: a request reads both without an
await in between, so it runs entirely on the old model or entirely on the new one, and every
response names its ``model_version``. The old batcher finishes what was handed to it, then stops.

One worker reloads itself (``SIGHUP`` to the process, or ``POST /v1/admin/reload``). With
``serve.workers > 1``, uvicorn's supervisor answers ``SIGHUP`` with a rolling restart (each new
worker loads and verifies the model and is ready before an old one is stopped), and the endpoint
sends that signal to the supervisor.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.dashboard.page import load_evaluation
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.serving.batching import MicroBatcher
from sentiment_pipeline.serving.routes.predict import LARGE_REQUESTS
from sentiment_pipeline.serving.schemas import tighten_schema

log = logging.getLogger(__name__)

WARM_UP_TEXTS = ["warm up", "@united thanks for the great flight!", ""]


def _nothing() -> None:
    pass


def refreeze() -> None:
    """The garbage collector's view after a swap, as after start-up (app.py): the old model's
    objects, frozen at start-up, collected (cycles among them would otherwise never be), the new
    one's frozen, so full collections do not walk it under load. One full collection per reload
    (tens of milliseconds, on a thread, holding the GIL)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ModelReloader:
    """Replaces ``app.state.predictor`` and ``app.state.batcher`` (one reload at a time)."""

    def __init__(self, app: FastAPI, load_predictor: Callable[[], Predictor], settings: ServeConfig,
                 root: Path) -> None:
        self.app, self.load_predictor, self.settings, self.root = app, load_predictor, settings, root
        self._lock = asyncio.Lock()

    def _load(self) -> Predictor:
        predictor = self.load_predictor()  # verified against dvc.lock, compiled path checked
        predictor.predict(WARM_UP_TEXTS)  # first-call costs (imports, caches) paid here, not by a request
        return predictor

    async def reload(self) -> tuple[str, Predictor]:
        """Load, verify and warm up the current ``models/final``, then swap; returns the old
        model's version and the new predictor. A model that fails verification raises, and the old
        one keeps serving."""
        async with self._lock:
            state = self.app.state
            new = await run_in_threadpool(self._load)
            evaluation = await run_in_threadpool(load_evaluation, self.root, new.classes)
            batcher = MicroBatcher(new, max_batch=self.settings.batch_max_texts, max_wait_ms=self.settings.batch_wait_ms)
            batcher.start()
            old, old_batcher = state.predictor, state.batcher
            # the swap: no await between these assignments
            state.predictor, state.batcher, state.evaluation = new, batcher, evaluation
            state.metrics.add_classes(new.classes)
            tighten_schema(self.app.openapi(), self.settings, new.classes)
            log.info("reloaded: serving model %s (%s), was %s", new.version, new.metadata.get("family"), old.version)
            await old_batcher.drain()
            await old_batcher.close()
            # large and explained requests run on their own one-thread executor, first in first
            # out: once a no-op submitted now has run, those that began on the old model are done
            await asyncio.get_running_loop().run_in_executor(LARGE_REQUESTS, _nothing)
            old_version = old.version
            del old, old_batcher
            await run_in_threadpool(refreeze)
            return old_version, new

    def on_sighup(self) -> None:
        """SIGHUP in a single-process server: reload in the background, log the outcome."""
        task = asyncio.get_running_loop().create_task(self._reload_logged(), name="model-reload")
        self._task = task  # keep a reference until it ends

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except Exception as exc:  # a model that fails verification: keep serving the old one
            log.error("reload refused, still serving %s: %s", self.app.state.predictor.version, exc)

    def install_signal_handler(self) -> bool:
        """Reload on SIGHUP (single-process servers only: with workers, uvicorn's supervisor
        owns SIGHUP). False where signals cannot be handled (not the main thread)."""
        if self.settings.workers > 1:
            return False
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.on_sighup)
        except (RuntimeError, ValueError, NotImplementedError):  # e.g. a test client's thread
            return False
        return True

    def restart_workers(self) -> None:
        """With several workers: ask uvicorn's supervisor (our parent) for a rolling restart."""
        os.kill(os.getppid(), signal.SIGHUP)
