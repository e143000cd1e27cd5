"""Dynamic batching: sequences from concurrent requests are scored together, one forward pass per batch.

RL trainers (OpenRLHF's single-turn executor, one `/get_reward` request per rollout) send many small concurrent
requests; a forward pass per request leaves an accelerator idle between tiny batches. `DynamicBatcher` queues every
sequence, waits at most `max_wait_ms` for a batch to fill, sorts the waiting sequences by length so each batch pads
little, and runs the scoring function on one worker thread, the only thread that ever touches the model.
"""

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

# A window holds up to this many batches' worth of queued sequences: enough to sort by length across requests,
# small enough that the oldest request does not wait behind a long queue it arrived before.
WINDOW_BATCHES = 8


class QueueFullError(RuntimeError):
    """The queue already holds `max_queue_items` sequences; the client should retry later."""


class BatcherClosedError(RuntimeError):
    """The batcher is shutting down and takes no new work."""


@dataclass(eq=False)
class _Request:
    future: asyncio.Future
    results: list
    remaining: int


@dataclass(eq=False)
class _Item:
    request: _Request
    index: int
    length: int
    payload: Any
    enqueued: float = field(default_factory=time.monotonic)


def plan_batches(items: Sequence, lengths: Sequence[int], max_batch_size: int, max_batch_tokens: int | None = None):
    """Split `items` into batches, longest first, of at most `max_batch_size` rows and at most `max_batch_tokens`
    padded positions (rows × longest row); a single sequence longer than the budget forms its own batch.

    Example:

    ```python
    >>> from trl_anchor.serving.batching import plan_batches

    >>> plan_batches(["a", "b", "c", "d"], [3, 9, 1, 8], max_batch_size=3, max_batch_tokens=16)
    [['b'], ['d', 'a'], ['c']]
    ```
    """
    order = sorted(range(len(items)), key=lambda i: -lengths[i])
    batches, batch, width = [], [], 0
    for i in order:
        fits_tokens = max_batch_tokens is None or (len(batch) + 1) * width <= max_batch_tokens
        if batch and (len(batch) == max_batch_size or not fits_tokens):
            batches.append(batch)
            batch = []
        if not batch:
            width = lengths[i]  # sorted longest first: the first row sets the padded width
        batch.append(items[i])
    if batch:
        batches.append(batch)
    return batches


class DynamicBatcher:
    """Queue sequences from concurrent requests and score them in length-sorted batches on one worker thread.

    Args:
        score_fn (`Callable[[list], Sequence]`): scores a batch of payloads, returning one result per payload. It runs
            on the batcher's single worker thread, so it may own a model that is not thread-safe.
        max_batch_size (`int`): most payloads per `score_fn` call.
        max_batch_tokens (`int`, *optional*): most padded positions per call (rows × longest length).
        max_wait_ms (`float`): how long the oldest queued payload waits for a batch to fill.
        max_queue_items (`int`): queued payloads beyond which `submit` raises `QueueFullError`.

    Call `start()` inside the event loop, `await submit(payloads, lengths)` per request and `await close()` at
    shutdown; `close` scores everything already queued before it returns.

    Example:

    ```python
    >>> import asyncio
    >>> from trl_anchor.serving.batching import DynamicBatcher

    >>> async def main():
    ...     batcher = DynamicBatcher(lambda texts: [t.upper() for t in texts], max_batch_size=8, max_wait_ms=5)
    ...     batcher.start()
    ...     results = await asyncio.gather(batcher.submit(["a", "b"], [1, 1]), batcher.submit(["c"], [1]))
    ...     await batcher.close()
    ...     return results, batcher.stats["forward_passes"]
    >>> asyncio.run(main())
    ([['A', 'B'], ['C']], 1)
    ```
    """

    def __init__(
        self,
        score_fn: Callable[[list], Sequence],
        max_batch_size: int = 32,
        max_batch_tokens: int | None = None,
        max_wait_ms: float = 5.0,
        max_queue_items: int = 8192,
    ):
        self.score_fn = score_fn
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue_items = max_queue_items
        self.stats = {"forward_passes": 0, "scored_items": 0, "largest_batch": 0, "failed_batches": 0}
        self._queue: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trl-anchor-scorer")
        self._task: asyncio.Task | None = None
        self._closing = False

    @property
    def queued_items(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="trl-anchor-batcher")

    async def submit(self, payloads: Sequence, lengths: Sequence[int]) -> list:
        """Queue the payloads of one request and wait for their results (in input order)."""
        if self._closing:
            raise BatcherClosedError("The server is shutting down.")
        if self._task is None:
            raise RuntimeError("Call `start()` before submitting work.")
        if len(self._queue) + len(payloads) > self.max_queue_items:
            raise QueueFullError(
                f"{len(self._queue)} sequences are already waiting (limit {self.max_queue_items}); retry later."
            )
        request = _Request(asyncio.get_running_loop().create_future(), [None] * len(payloads), len(payloads))
        pairs = enumerate(zip(payloads, lengths, strict=True))
        self._queue.extend(_Item(request, i, length, payload) for i, (payload, length) in pairs)
        self._wakeup.set()
        # A cancelled wait (client timeout) cancels the future; its queued items are then skipped, not scored.
        return await request.future

    async def close(self) -> None:
        """Stop taking work, score everything already queued, then stop the worker thread."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_batch()
            window = self._take_window()
            lengths = [item.length for item in window]
            for batch in plan_batches(window, lengths, self.max_batch_size, self.max_batch_tokens):
                live = [item for item in batch if not item.request.future.done()]
                if live:
                    await self._score(loop, live)

    async def _wait_for_batch(self) -> None:
        deadline = self._queue[0].enqueued + self.max_wait
        while len(self._queue) < self.max_batch_size and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take_window(self) -> list[_Item]:
        window = []
        while self._queue and len(window) < self.max_batch_size * WINDOW_BATCHES:
            item = self._queue.popleft()
            if not item.request.future.done():
                window.append(item)
        return window

    async def _score(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        try:
            results = await loop.run_in_executor(self._executor, self.score_fn, [item.payload for item in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"The scoring function returned {len(results)} results for {len(batch)} inputs.")
        except Exception as error:  # one failed batch fails its requests, not the server
            logger.error(f"Scoring a batch of {len(batch)} failed: {error!r}")
            self.stats["failed_batches"] += 1
            for item in batch:
                if not item.request.future.done():
                    item.request.future.set_exception(error)
            return
        self.stats["forward_passes"] += 1
        self.stats["scored_items"] += len(batch)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
        for item, result in zip(batch, results, strict=True):
            request = item.request
            if request.future.done():
                continue
            request.results[item.index] = result
            request.remaining -= 1
            if request.remaining == 0:
                request.future.set_result(request.results)
