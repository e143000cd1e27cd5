"""DynamicBatcher and plan_batches: coalescing across requests, length sorting, limits, draining, failures."""

import asyncio
import random
import threading
import time

import pytest

from trl_anchor.serving.batching import BatcherClosedError, DynamicBatcher, QueueFullError, plan_batches


class RecordingScorer:
    """Scores payload `x` as `2 * x` and records every batch it was called with (and the calling thread)."""

    def __init__(self, gate: threading.Event | None = None):
        self.batches: list[list] = []
        self.threads: set[str] = set()
        self.gate = gate

    def __call__(self, payloads):
        if self.gate is not None:
            self.gate.wait(timeout=10)
        self.batches.append(list(payloads))
        self.threads.add(threading.current_thread().name)
        return [2 * x for x in payloads]


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.mark.parametrize("seed", range(5))
def test_plan_batches_covers_every_item_once_sorted_and_within_limits(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 100) for _ in range(rng.randint(1, 60))]
    items = list(range(len(lengths)))
    max_batch_size, max_batch_tokens = rng.randint(1, 8), rng.choice([None, 120, 300])
    batches = plan_batches(items, lengths, max_batch_size, max_batch_tokens)

    assert sorted(i for batch in batches for i in batch) == items
    flat_lengths = [lengths[i] for batch in batches for i in batch]
    assert flat_lengths == sorted(lengths, reverse=True)  # longest first, across and within batches
    for batch in batches:
        assert 1 <= len(batch) <= max_batch_size
        padded = len(batch) * max(lengths[i] for i in batch)
        assert max_batch_tokens is None or padded <= max_batch_tokens or len(batch) == 1


def test_plan_batches_fills_each_batch_greedily():
    # Worked by hand: widths 9 | 8, 3 (2 x 8 = 16 fits) | 1 (3 x 8 = 24 would not).
    batches = plan_batches(list("abcd"), [3, 9, 1, 8], max_batch_size=3, max_batch_tokens=16)
    assert batches == [["b"], ["d", "a"], ["c"]]
    assert plan_batches(list("abcd"), [3, 9, 1, 8], max_batch_size=2) == [["b", "d"], ["a", "c"]]


def test_concurrent_requests_share_one_forward_pass_and_get_their_own_results():
    scorer = RecordingScorer()

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=64, max_wait_ms=200)
        batcher.start()
        requests = [[10 * r + i for i in range(r % 3 + 1)] for r in range(10)]
        results = await asyncio.gather(*(batcher.submit(p, [1] * len(p)) for p in requests))
        await batcher.close()
        return requests, results, batcher.stats

    requests, results, stats = run(main())
    assert results == [[2 * x for x in payloads] for payloads in requests]
    assert len(scorer.batches) == 1 and sorted(scorer.batches[0]) == sorted(x for p in requests for x in p)
    assert stats["forward_passes"] == 1 and stats["scored_items"] == sum(map(len, requests))
    assert scorer.threads and all(name.startswith("trl-anchor-scorer") for name in scorer.threads)


def test_a_full_batch_does_not_wait_and_batches_are_length_sorted():
    scorer = RecordingScorer()

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=4, max_wait_ms=30_000)
        batcher.start()
        lengths = [5, 50, 7, 40, 6, 45, 8, 42]
        start = time.monotonic()
        results = await asyncio.gather(*(batcher.submit([n], [n]) for n in lengths))
        elapsed = time.monotonic() - start
        await batcher.close()
        return results, elapsed

    results, elapsed = run(main())
    assert elapsed < 10  # a 30 s max wait never applies once max_batch_size sequences are queued
    assert [r[0] for r in results] == [2 * n for n in [5, 50, 7, 40, 6, 45, 8, 42]]
    assert scorer.batches == [[50, 45, 42, 40], [8, 7, 6, 5]]


def test_close_scores_queued_work_without_waiting_then_refuses_new_work():
    scorer = RecordingScorer()

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=64, max_wait_ms=30_000)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([i], [1])) for i in range(3)]
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await batcher.close()
        closed_after = time.monotonic() - start
        with pytest.raises(BatcherClosedError):
            await batcher.submit([9], [1])
        return [await p for p in pending], closed_after

    results, closed_after = run(main())
    assert results == [[0], [2], [4]] and closed_after < 10


def test_a_full_queue_refuses_work():
    gate = threading.Event()
    scorer = RecordingScorer(gate)

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=2, max_wait_ms=0, max_queue_items=3)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([1, 2], [1, 1]))  # taken by the worker, which blocks
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(batcher.submit([3, 4, 5], [1, 1, 1]))  # fills the queue
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFullError, match="3 sequences are already waiting"):
            await batcher.submit([6], [1])
        gate.set()
        results = [await first, await second]
        await batcher.close()
        return results

    assert run(main()) == [[2, 4], [6, 8, 10]]


def test_a_failing_batch_fails_its_requests_and_the_batcher_keeps_serving():
    def score(payloads):
        if "bad" in payloads:
            raise RuntimeError("boom")
        return [p.upper() for p in payloads]

    async def main():
        batcher = DynamicBatcher(score, max_batch_size=8, max_wait_ms=50)
        batcher.start()
        outcomes = await asyncio.gather(batcher.submit(["bad"], [1]), batcher.submit(["x"], [1]),
                                        return_exceptions=True)
        later = await batcher.submit(["ok"], [1])
        await batcher.close()
        return outcomes, later, batcher.stats

    outcomes, later, stats = run(main())
    assert all(isinstance(o, RuntimeError) and str(o) == "boom" for o in outcomes)  # same batch, same failure
    assert later == ["OK"] and stats["failed_batches"] == 1


def test_a_cancelled_request_is_not_scored():
    gate = threading.Event()
    scorer = RecordingScorer(gate)

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=1, max_wait_ms=0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([1], [1]))
        await asyncio.sleep(0.1)  # the worker holds payload 1 at the gate
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(batcher.submit([2], [1]), 0.05)
        kept = asyncio.ensure_future(batcher.submit([3], [1]))
        await asyncio.sleep(0.05)
        gate.set()
        results = [await first, await kept]
        await batcher.close()
        return results

    assert run(main()) == [[2], [6]]
    assert scorer.batches == [[1], [3]]
