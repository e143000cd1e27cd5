"""Endpoints of the reward-model server in process (Starlette's TestClient runs the app and its batcher): values
against direct `score_responses` calls and scipy's normal quantile, the OpenRLHF shape, every error path, auth."""

import base64
import json
import socket
import time

import numpy as np
import pytest
import torch
from scipy.stats import norm
from server_helpers import ThreadedServer, save_reward_model
from starlette.testclient import TestClient
from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

from trl_anchor.rewards.scoring import score_responses, tokenize_response
from trl_anchor.serving.app import create_app
from trl_anchor.serving.config import ServeConfig
from trl_anchor.serving.scorer import RewardScorer

TOKEN = "s3cret-token-0123456789abcdef"
CHAT_PROMPT = [{"role": "user", "content": "what is two plus two"}]
CHAT_RESPONSE = [{"role": "assistant", "content": "it is four"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer_dir):
    return save_reward_model(tmp_path_factory.mktemp("served_rm"), tokenizer_dir)


@pytest.fixture(scope="module")
def scorer(model_dir):
    return RewardScorer.from_pretrained(str(model_dir))


def make_client(scorer, token=None, **config):
    return TestClient(create_app(scorer, ServeConfig(max_wait_ms=1.0, **config), token=token))


@pytest.fixture(scope="module")
def client(scorer):
    with make_client(scorer) as client:
        yield client


def direct(scorer, response, prompt=None, max_length=None):
    """One unbatched `score_responses` call: (μ, σ)."""
    scores = score_responses(scorer.model, scorer.tokenizer, [response], None if prompt is None else [prompt],
                             max_length=max_length)
    return scores.mean[0], None if scores.std is None else scores.std[0]


def test_score_returns_mu_sigma_and_transforms_per_item_and_attribute(client, scorer):
    responses = ["the quick brown fox", " jumps over the lazy dog", CHAT_RESPONSE, "a helpful answer"]
    prompts = [None, "the quick brown fox", CHAT_PROMPT, "explain"]
    body = client.post(
        "/score", json={"responses": responses, "prompts": prompts, "transforms": ["quantile:0.1", "lcb:1.5"]}
    ).json()

    expected = np.array([direct(scorer, r, p) for r, p in zip(responses, prompts, strict=True)])
    assert body["attributes"] == ["reward"]
    mu, sigma = np.array(body["mu"]), np.array(body["sigma"])
    assert mu.shape == sigma.shape == (4, 1)
    np.testing.assert_allclose(mu[:, 0], expected[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sigma[:, 0], expected[:, 1], rtol=1e-5, atol=1e-6)
    assert np.ptp(sigma) > 1e-2  # σ really varies, so the transform checks below depend on it
    np.testing.assert_allclose(np.array(body["transforms"]["quantile:0.1"])[:, 0],
                               expected[:, 0] + norm.ppf(0.1) * expected[:, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.array(body["transforms"]["lcb:1.5"])[:, 0],
                               expected[:, 0] - 1.5 * expected[:, 1], rtol=1e-5, atol=1e-5)
    tokenizer = scorer.tokenizer
    assert body["num_tokens"] == [len(tokenize_response(tokenizer, r, p)) for r, p in zip(responses, prompts,
                                                                                            strict=True)]
    assert body["truncated"] == [False] * 4


def test_get_reward_takes_openrlhfs_request_and_answers_its_keys(client, scorer):
    # The body OpenRLHF's SingleTurnAgentExecutor sends: one decoded prompt+response per query, prompts, labels.
    queries = ["<|user|>what is two plus two<eos><|assistant|>it is four", "the cartoon shows a cat"]
    response = client.post("/get_reward", json={"query": queries, "prompts": ["<|user|>what", "the"],
                                                "labels": [None, "4"]})
    assert response.status_code == 200
    body = response.json()
    expected = np.array([direct(scorer, q) for q in queries])  # the query is the whole text, scored as plain text
    np.testing.assert_allclose(body["rewards"], expected[:, 0], rtol=1e-5, atol=1e-6)  # default transform: mean
    assert body["scores"] == body["rewards"]
    np.testing.assert_allclose(body["extra_logs"]["reward_mu"], expected[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(body["extra_logs"]["reward_sigma"], expected[:, 1], rtol=1e-5, atol=1e-6)


def test_get_reward_returns_the_configured_transform(scorer):
    with make_client(scorer, transform="quantile:0.25") as client:
        body = client.post("/get_reward", json={"query": ["a helpful answer"]}).json()
        info = client.get("/info").json()
    mu, sigma = direct(scorer, "a helpful answer")
    assert body["rewards"] == pytest.approx([mu + norm.ppf(0.25) * sigma], rel=1e-5, abs=1e-6)
    assert info["transform"] == "quantile:0.25"


def test_health_and_info(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["reward_type"] == "gaussian" and info["attributes"] == ["reward"]
    assert info["transform"] == "mean" and info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["max_tokens_per_item"] == 256  # the tiny GPT-2's n_positions
    assert info["limits"]["max_items_per_request"] == 256 and info["authentication"] == "none"
    assert {"forward_passes", "scored_items", "max_batch_size"} <= set(info["batching"])
    assert info["trl_anchor_version"]
    assert info["anchor_thresholds"] is None and info["anchor_mean_offset"] == info["anchor_group_variance"] == 0.0


def test_anchor_transforms_read_the_models_offset_and_group_variance(tmp_path, tokenizer_dir):
    # A decoder's `score` has no bias, so its anchors read μ + μ₀; a grouped model's new-group classes σ² + s².
    thresholds, offset, group_variance = [-1.0, 1.0], -1.7, 0.3
    path = save_reward_model(tmp_path / "anchored", tokenizer_dir)
    scorer = RewardScorer.from_pretrained(str(path))
    scorer.model.record_training_settings(
        anchor_thresholds=thresholds, anchor_mean_offset=offset, anchor_group_variance=group_variance
    )
    responses = ["the quick brown fox", "a helpful answer"]
    with make_client(scorer) as client:
        body = client.post("/score", json={"responses": responses, "transforms": ["p_top"]}).json()
        info = client.get("/info").json()
    mu, sigma = np.array([direct(scorer, r) for r in responses]).T
    expected = norm.sf((thresholds[-1] - (mu + offset)) / np.sqrt(sigma**2 + group_variance))
    np.testing.assert_allclose(np.array(body["transforms"]["p_top"])[:, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(np.array(body["mu"])[:, 0], mu, rtol=1e-5, atol=1e-6)  # μ itself is the head's
    assert info["anchor_mean_offset"] == offset and info["anchor_group_variance"] == group_variance


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "path, body, status, kind, message",
    [
        ("/score", b'{"responses": ["a"', 400, "invalid_json", "not valid JSON"),
        ("/score", b'{"responses": ["\xff\xfe"]}', 400, "invalid_utf8", "not valid UTF-8"),
        ("/score", b'["a", "b"]', 400, "invalid_request", "must be a JSON object, got array"),
        ("/score", b"{}", 400, "invalid_request", "needs `responses`"),
        ("/score", b'{"responses": "abc"}', 400, "invalid_request", "`responses` must be an array, got string"),
        ("/score", b'{"responses": []}', 400, "invalid_request", "`responses` is empty"),
        ("/score", b'{"responses": ["a", 3]}', 400, "invalid_request", "`responses[1]` must be a string"),
        ("/score", b'{"responses": [[]]}', 400, "invalid_request", "got array (empty)"),
        ("/score", b'{"responses": [[{"role": "assistant"}]]}', 400, "invalid_request", "`responses[0][0]`"),
        ("/score", b'{"responses": ["a"], "prompts": ["p", "q"]}', 400, "invalid_request", "pair up"),
        ("/score", b'{"responses": ["a"], "prompts": [[{"role": "user", "content": "x"}]]}', 400, "invalid_request",
         "must both be strings or both chat messages"),
        ("/score", b'{"responses": ["a"], "respones": ["b"]}', 400, "invalid_request", "Unknown field"),
        ("/score", b'{"responses": ["\\ud800"]}', 400, "invalid_request", "unpaired UTF-16 surrogate"),
        ("/score", b'{"responses": ["a"], "transforms": "mean"}', 400, "invalid_request", "array of RewardTransform"),
        ("/score", b'{"responses": ["a"], "transforms": ["quantile:2"]}', 400, "invalid_transform", "between 0 and 1"),
        ("/score", b'{"responses": ["a"], "transforms": ["mean,normalize"]}', 400, "invalid_transform",
         "reward_normalization"),
        ("/get_reward", b'{"prompts": ["a"]}', 400, "invalid_request", "needs `query`"),
        ("/get_reward", b'{"query": []}', 400, "invalid_request", "`query` is empty"),
        ("/get_reward", b'{"query": [["a"]]}', 400, "invalid_request", "`query[0]` must be a string"),
        ("/get_reward", b'{"query": ["a"], "labels": [1, 2]}', 400, "invalid_request", "`labels` has 2 items"),
        ("/get_reward", b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json", "too deeply"),
    ],
)
def test_bad_requests_get_one_clear_json_error(client, path, body, status, kind, message):
    response = client.post(path, content=body, headers=JSON)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind and message in error["message"]


def test_content_type_size_and_item_limits(scorer):
    with make_client(scorer, max_request_bytes=200, max_items_per_request=3) as client:
        plain = client.post("/score", content=b'{"responses": ["a"]}', headers={"content-type": "text/plain"})
        assert plain.status_code == 415 and plain.json()["error"]["type"] == "unsupported_media_type"
        big = client.post("/score", json={"responses": ["x" * 300]})
        assert big.status_code == 413 and "limit is 200" in big.json()["error"]["message"]
        # No Content-Length (chunked upload): the limit applies while reading.
        chunked = client.post("/score", content=iter([b'{"responses": ["', b"x" * 300, b'"]}']), headers=JSON)
        assert chunked.status_code == 413 and chunked.json()["error"]["type"] == "body_too_large"
        many = client.post("/score", json={"responses": ["a", "b", "c", "d"]})
        assert many.status_code == 413 and many.json()["error"]["type"] == "too_many_items"
        assert client.post("/score", json={"responses": ["a", "b", "c"]}).status_code == 200


def test_unknown_paths_and_methods_answer_json(client):
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
    wrong = client.get("/score")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "method_not_allowed"


@pytest.mark.parametrize("over_length", ["truncate", "reject"])
def test_over_long_items_are_truncated_by_the_scoring_rule_or_rejected(model_dir, over_length):
    scorer = RewardScorer.from_pretrained(str(model_dir), max_tokens_per_item=8, over_length=over_length)
    long_text = "the quick brown fox jumps over the lazy dog " * 3
    with make_client(scorer) as client:
        response = client.post("/score", json={"responses": ["a cat", long_text]})
    if over_length == "reject":
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["type"] == "too_many_tokens" and "Item(s) [1]" in error["message"] and "limit is 8" in error[
            "message"]
        return
    body = response.json()
    full_length = len(tokenize_response(scorer.tokenizer, long_text))
    assert full_length > 8 and body["num_tokens"] == [len(tokenize_response(scorer.tokenizer, "a cat")), full_length]
    assert body["truncated"] == [False, True]
    assert body["mu"][1][0] == pytest.approx(direct(scorer, long_text, max_length=8)[0], rel=1e-5, abs=1e-6)
    assert body["mu"][1][0] != pytest.approx(direct(scorer, long_text)[0], rel=1e-3)  # truncation changed it


def test_token_auth(scorer):
    with make_client(scorer, token=TOKEN) as client:
        payload = {"responses": ["a cat"]}
        missing = client.post("/score", json=payload)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["error"]["type"] == "unauthorized"
        for wrong in ["Bearer " + TOKEN[:-1], "Bearer " + TOKEN + "x", "Bearer", "Token " + TOKEN, TOKEN]:
            assert client.post("/score", json=payload, headers={"Authorization": wrong}).status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post("/score", json=payload, headers=bearer).status_code == 200
        # HTTP Basic with the token as password: what aiohttp sends for http://user:<token>@host/get_reward.
        basic = {"Authorization": "Basic " + base64.b64encode(f"openrlhf:{TOKEN}".encode()).decode()}
        assert client.post("/get_reward", json={"query": ["a"]}, headers=basic).status_code == 200
        assert client.get("/info").status_code == 401 and client.get("/info", headers=bearer).status_code == 200
        assert client.get("/health").status_code == 200  # liveness stays open and says nothing
        # Unauthenticated clients are refused before their body is read or validated.
        assert client.post("/score", content=b"{bad", headers=JSON).status_code == 401


@pytest.fixture(scope="module")
def scalar_model_dir(tmp_path_factory, tokenizer_dir):
    """A plain (Bradley–Terry) GPT2ForSequenceClassification reward model with a custom-code `auto_map` whose module
    would leave a marker file if it were ever imported."""
    path = tmp_path_factory.mktemp("scalar_rm")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(1)
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=64, vocab_size=len(tokenizer), num_labels=1,
                        pad_token_id=tokenizer.pad_token_id)
    GPT2ForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    marker = path / "remote_code_ran"
    (path / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\nfrom transformers import GPT2Config as Evil\n")
    config_file = path / "config.json"
    saved = json.loads(config_file.read_text())
    saved["auto_map"] = {"AutoConfig": "evil.Evil", "AutoModelForSequenceClassification": "evil.Evil"}
    config_file.write_text(json.dumps(saved))
    return path


def test_scalar_model_serves_mu_only_and_never_runs_remote_code(scalar_model_dir):
    scorer = RewardScorer.from_pretrained(str(scalar_model_dir))
    assert not (scalar_model_dir / "remote_code_ran").exists()
    with make_client(scorer) as client:
        body = client.post("/score", json={"responses": ["a cat", "the dog"]}).json()
        refused = client.post("/score", json={"responses": ["a cat"], "transforms": ["quantile:0.1"]})
        rewards = client.post("/get_reward", json={"query": ["a cat"]}).json()
    assert body["sigma"] is None and body["mu"][0][0] == pytest.approx(direct(scorer, "a cat")[0], rel=1e-5)
    assert refused.status_code == 400 and "needs σ" in refused.json()["error"]["message"]
    assert set(rewards["extra_logs"]) == {"reward_mu"}
    with pytest.raises(ValueError, match="needs σ"):
        create_app(scorer, ServeConfig(transform="lcb:1"))


def test_pickle_checkpoints_are_refused(tmp_path, model_dir):
    """Only safetensors are loaded: a `pytorch_model.bin` (pickle) checkpoint is not unpickled."""
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    state = RewardScorer.from_pretrained(str(model_dir)).model.state_dict()
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        RewardScorer.from_pretrained(str(tmp_path))


def test_bfloat16_weights_serve_the_same_scores_as_a_direct_bfloat16_call(model_dir, scorer):
    bf16 = RewardScorer.from_pretrained(str(model_dir), dtype="bfloat16")
    assert bf16.info()["dtype"] == "bfloat16" and scorer.info()["dtype"] == "float32"  # `auto` on CPU is float32
    responses = ["a cat", "the quick brown fox jumps over the lazy dog"]
    with make_client(bf16) as client:
        body = client.post("/score", json={"responses": responses}).json()
    expected = np.array([direct(bf16, r) for r in responses])
    np.testing.assert_allclose(np.array(body["mu"])[:, 0], expected[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(body["sigma"])[:, 0], expected[:, 1], rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(body["mu"])) and np.all(np.isfinite(body["sigma"]))
    with pytest.raises(ValueError, match="dtype"):
        RewardScorer.from_pretrained(str(model_dir), dtype="float8")


class SlowScorer(RewardScorer):
    """The served scorer, but each forward pass takes `delay` seconds longer (or returns NaN when `nan`)."""

    delay, nan = 0.0, False

    def score(self, items):
        time.sleep(self.delay)
        results = super().score(items)
        return [(float("nan"), std) for _, std in results] if self.nan else results


def test_timeouts_back_pressure_and_non_finite_scores_are_clear_errors(scorer):
    slow = SlowScorer(scorer.model, scorer.tokenizer)
    slow.delay = 1.0
    with make_client(slow, request_timeout=0.2) as client:
        timed_out = client.post("/score", json={"responses": ["a cat"]})
    assert timed_out.status_code == 504 and timed_out.json()["error"]["type"] == "timeout"
    with make_client(scorer, max_queue_items=1) as client:
        full = client.post("/score", json={"responses": ["a cat", "a dog"]})
    assert full.status_code == 503 and full.json()["error"]["type"] == "overloaded"
    assert full.headers["retry-after"] == "1"
    broken = SlowScorer(scorer.model, scorer.tokenizer)
    broken.nan = True
    with make_client(broken) as client:
        nan = client.post("/get_reward", json={"query": ["a cat", "a dog"]})
    assert nan.status_code == 500 and nan.json()["error"]["type"] == "non_finite_score"
    assert "item(s) [0, 1]" in nan.json()["error"]["message"]


def test_a_body_that_does_not_arrive_in_time_gets_408(scorer):
    with ThreadedServer(create_app(scorer, ServeConfig(body_timeout=0.5))) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n" + b'{"responses": ["a')  # 17 of the 100 bytes, then silence
            reply = _read_http_response(sock)
    status_line, _, rest = reply.partition("\r\n")
    assert " 408 " in status_line and '"body_timeout"' in rest


def _read_http_response(sock: socket.socket) -> str:
    """One whole HTTP response: a loaded server may send the head and the body in separate segments."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:  # closed before a whole head: the assertions on it fail
            return data.decode()
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()
