"""Micro-batching: concurrent requests share one model call.

One ``predict`` call on one text costs about as much as on twenty (scikit-learn's per-call
validation and the calibrated SVM's three members dominate), so under concurrent load the
server predicts the texts that arrived within ``max_wait_ms`` of each other together. Every
step of the model is row-wise (TF-IDF of a text, a dot product, a sigmoid), so a text gets
the same numbers alone or in a batch; a test checks it.
"""

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from sentiment_pipeline.inference.predictor import Predictions, Predictor
from sentiment_pipeline.predlog.queues import next_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One text's prediction, cut out of a batch."""

    label_index: int
    confidence: float
    probabilities: np.ndarray
    cleaned_length: int


class MicroBatcher:
    """Collects texts from concurrent requests and predicts them in batches on one thread."""

    def __init__(self, predictor: Predictor, max_batch: int = 64, max_wait_ms: float = 2.0) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue[tuple[str, asyncio.Future]] = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.batches = 0
        self.outstanding = 0  # texts handed to predict() whose result is not back yet

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="micro-batcher")

    async def predict(self, texts: list[str]) -> Predictions:
        """The predictions of ``texts``, computed together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in texts]
        for text, future in zip(texts, futures, strict=True):
            self.queue.put_nowait((text, future))
        self.outstanding += len(texts)
        try:
            rows: list[Row] = await asyncio.gather(*futures)
        finally:
            self.outstanding -= len(texts)
        classes = self.predictor.classes
        return Predictions(
            classes=classes,
            label_index=np.array([r.label_index for r in rows], dtype=np.int64),
            confidence=np.array([r.confidence for r in rows]),
            probabilities=np.array([r.probabilities for r in rows]).reshape(len(rows), len(classes)),
            cleaned_length=np.array([r.cleaned_length for r in rows], dtype=np.int64),
        )

    async def _run(self) -> None:
        while True:
            await self._predict(await next_batch(self.queue, self.max_batch, self.max_wait))

    async def _predict(self, batch: list[tuple[str, asyncio.Future]]) -> None:
        texts = [text for text, _ in batch]
        try:
            # On the event loop's thread: the model is Python-bound, so a worker thread would only
            # contend for the GIL with the loop (every switch costs up to sys.getswitchinterval()).
            result = self.predictor.predict(texts)
        except Exception as exc:  # a model failure reaches every waiting request as a 500
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        for i, (_, future) in enumerate(batch):
            if not future.done():  # the request may have been cancelled (client went away)
                future.set_result(Row(int(result.label_index[i]), float(result.confidence[i]),
                                      result.probabilities[i], int(result.cleaned_length[i])))

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every text already handed in has its result (a model being replaced
        finishes the requests that started on it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.outstanding and loop.time() < deadline:
            await asyncio.sleep(max(self.max_wait, 0.001))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
