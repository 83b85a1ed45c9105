"""Taking work off an asyncio queue in batches (the micro-batcher and the prediction log)."""

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def next_batch(queue: "asyncio.Queue[T]", max_items: int, max_wait: float) -> list[T]:
    """Wait for one item, then take whatever else arrives within ``max_wait`` seconds, up to
    ``max_items``. Items already queued are taken without waiting."""
    loop = asyncio.get_running_loop()
    batch = [await queue.get()]
    deadline = loop.time() + max_wait
    while len(batch) < max_items:
        try:
            batch.append(queue.get_nowait())
            continue
        except asyncio.QueueEmpty:
            pass
        timeout = deadline - loop.time()
        if timeout <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(queue.get(), timeout))
        except TimeoutError:
            break
    return batch
