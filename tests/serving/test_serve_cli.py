"""`trl-anchor serve` from the command line: it refuses an unauthenticated non-loopback bind, reads its token from the
environment, and on SIGTERM finishes the requests in flight before it exits."""

import signal
import threading
import time

import httpx2 as httpx
import numpy as np
import pytest
from server_helpers import save_reward_model, start_server_process, stop_process, wait_until_healthy

from trl_anchor import cli
from trl_anchor.rewards.scoring import score_responses
from trl_anchor.serving import RewardClient
from trl_anchor.serving.config import TOKEN_ENV_VAR
from trl_anchor.serving.scorer import RewardScorer

TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer_dir):
    return save_reward_model(tmp_path_factory.mktemp("served_rm"), tokenizer_dir)


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


def test_a_non_loopback_bind_without_a_token_refuses_to_start(model_dir, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV_VAR, raising=False)
    with pytest.raises(ValueError, match="Refusing to listen on '0.0.0.0' without authentication"):
        cli.main(["serve", "--model_name_or_path", str(model_dir), "--host", "0.0.0.0", "--port", "0"])


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests_then_exits(model_dir):
    # Requests wait up to 5 s for a batch to fill: the signal is sent once all of them are queued, none answered.
    process, url = start_server_process(model_dir, "--max_wait_ms", "5000", "--max_batch_size", "64",
                                        env={TOKEN_ENV_VAR: TOKEN})
    try:
        wait_until_healthy(url, process)
        texts = [f"the cartoon shows a cat {'in a board meeting ' * i}" for i in range(6)]
        results, finished_at = [None] * len(texts), [None] * len(texts)

        def call(i):
            with RewardClient(url, token=TOKEN, retries=0) as client:
                results[i] = client.score([texts[i]]).mu[0, 0]
            finished_at[i] = time.monotonic()

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
        for thread in threads:
            thread.start()
        with RewardClient(url, token=TOKEN) as client:
            wait_for(lambda: client.info()["batching"]["queued_items"] == len(texts))  # all queued, none answered
            assert client.info()["authentication"] == "bearer"
        sigterm_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=60)
        # uvicorn re-raises the signal it handled once shutdown is complete, so the exit status is SIGTERM's.
        assert process.wait(timeout=60) == -signal.SIGTERM
    finally:
        output = stop_process(process)
    assert all(t is not None and t > sigterm_at for t in finished_at), output  # answered after the signal
    scorer = RewardScorer.from_pretrained(str(model_dir))
    expected = [score_responses(scorer.model, scorer.tokenizer, [t]).mean[0] for t in texts]
    np.testing.assert_allclose(results, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(httpx.TransportError):  # and then it is gone
        httpx.get(f"{url}/health", timeout=2, trust_env=False)
