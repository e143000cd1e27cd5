"""Bounded loopback load test of `trl-anchor serve`: 10,000 requests from 32 concurrent clients, zero errors, every
answer equal to a direct `score_responses` call on the same text. Traffic goes to 127.0.0.1 only, and the run stops
by itself at a deadline."""

import http.client
import json
import random
import threading
import time

import httpx2 as httpx
import numpy as np
import pytest
from server_helpers import free_port, save_reward_model, start_server_process, stop_process, wait_until_healthy

from trl_anchor.rewards.scoring import score_responses
from trl_anchor.serving.scorer import RewardScorer

NUM_REQUESTS = 10_000
NUM_CLIENTS = 32
DEADLINE_S = 600
JSON = {"Content-Type": "application/json"}
WORDS = "the quick brown fox jumps over a lazy dog helpful answer explains reason step by step cartoon cat".split()


def make_cases(num_cases: int, seed: int = 0) -> list[dict]:
    """Distinct texts of 1-40 words: OpenRLHF queries, plain prompt/response pairs and chat conversations."""
    rng = random.Random(seed)

    def text(low, high):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    cases = []
    for i in range(num_cases):
        kind = ("query", "text", "chat")[i % 3]
        prompt, response = text(1, 12), text(1, 28)
        if kind == "query":
            cases.append({"kind": kind, "response": f"<|user|>{prompt}<eos><|assistant|>{response}", "prompt": None})
        elif kind == "text":
            cases.append({"kind": kind, "response": " " + response, "prompt": prompt})
        else:
            cases.append({"kind": kind, "response": [{"role": "assistant", "content": response}],
                          "prompt": [{"role": "user", "content": prompt}]})
    return cases


def request_for(case: dict) -> tuple[str, dict]:
    if case["kind"] == "query":  # OpenRLHF's body
        return "/get_reward", {"query": [case["response"]], "prompts": [""], "labels": [None]}
    return "/score", {"responses": [case["response"]], "prompts": [case["prompt"]]}


def value_of(case: dict, body: dict) -> tuple[float, float]:
    if case["kind"] == "query":
        return body["rewards"][0], body["extra_logs"]["reward_sigma"][0]
    return body["mu"][0][0], body["sigma"][0][0]


@pytest.mark.slow
def test_ten_thousand_requests_from_32_clients_all_correct(tmp_path, tokenizer_dir):
    model_dir = save_reward_model(tmp_path / "rm", tokenizer_dir)
    port = free_port()
    process, url = start_server_process(model_dir, port=port)  # default batching: 32 sequences, 5 ms wait
    received: list = [None] * NUM_REQUESTS
    errors: list[str] = []
    try:
        cases = make_cases(300)
        scorer = RewardScorer.from_pretrained(str(model_dir))
        expected = []
        for case in cases:  # one unbatched direct call per distinct text, while the server starts
            prompts = None if case["prompt"] is None else [case["prompt"]]
            scores = score_responses(scorer.model, scorer.tokenizer, [case["response"]], prompts)
            expected.append((scores.mean[0], scores.std[0]))
        wait_until_healthy(url, process)
        deadline = time.monotonic() + DEADLINE_S

        def client(worker: int) -> None:
            # The standard library's keep-alive connection: the cheapest client, so the run measures the server.
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for i in range(worker, NUM_REQUESTS, NUM_CLIENTS):
                if time.monotonic() > deadline:
                    errors.append(f"request {i}: deadline passed")
                    break
                case = cases[i % len(cases)]
                path, payload = request_for(case)
                try:
                    connection.request("POST", path, body=json.dumps(payload), headers=JSON)
                    response = connection.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException) as error:
                    errors.append(f"request {i}: {error!r}")
                    connection.close()
                    continue
                if response.status != 200:
                    errors.append(f"request {i}: {response.status} {body[:200]!r}")
                    continue
                received[i] = value_of(case, json.loads(body))
            connection.close()

        start = time.monotonic()
        threads = [threading.Thread(target=client, args=(w,)) for w in range(NUM_CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=DEADLINE_S + 60)
        elapsed = time.monotonic() - start
        stats = httpx.get(f"{url}/info", trust_env=False).json()["batching"]
    finally:
        output = stop_process(process)

    assert not errors, f"{len(errors)} errors, first: {errors[:5]}\n{output[-2000:]}"
    got = np.array(received, dtype=np.float64)
    want = np.array([expected[i % len(cases)] for i in range(NUM_REQUESTS)], dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert stats["scored_items"] == NUM_REQUESTS and stats["failed_batches"] == 0
    print(f"\n{NUM_REQUESTS} requests in {elapsed:.1f} s ({NUM_REQUESTS / elapsed:.0f} req/s); "
          f"{stats['forward_passes']} forward passes, mean batch {NUM_REQUESTS / stats['forward_passes']:.1f}")
