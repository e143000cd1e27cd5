"""Clients against a real uvicorn server on a loopback port: an OpenRLHF-shaped client (concurrent one-query
requests, URL-embedded credentials), `RewardClient`, and `RemoteRewardFunction` against the local
`GaussianRewardFunction`, including a GRPO run."""

import asyncio

import httpx2 as httpx
import numpy as np
import pytest
from scipy.stats import norm
from server_helpers import ThreadedServer, save_reward_model
from transformers import AutoTokenizer

from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.rewards.normalization import record_reward_statistics
from trl_anchor.rewards.reward_function import GaussianRewardFunction
from trl_anchor.rewards.scoring import score_responses
from trl_anchor.rewards.transforms import RewardTransform
from trl_anchor.serving import RemoteRewardFunction, RewardClient, RewardServerError, ServeConfig
from trl_anchor.serving.app import create_app
from trl_anchor.serving.scorer import RewardScorer

TOKEN = "s3cret-token-0123456789abcdef"
PROMPTS = ["the quick brown fox", "a helpful answer explains", "the cartoon shows a cat", "i think the caption"]
COMPLETIONS = [" jumps over", " the reason step by step", " in a board meeting", " is funny"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer_dir):
    return save_reward_model(tmp_path_factory.mktemp("served_rm"), tokenizer_dir)


@pytest.fixture(scope="module")
def scorer(model_dir):
    return RewardScorer.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def server(scorer):
    with ThreadedServer(create_app(scorer, ServeConfig(max_wait_ms=20.0))) as server:
        yield server


def direct(scorer, responses, prompts=None):
    """Unbatched `score_responses` calls, one per response: arrays (μ, σ)."""
    rows = [
        score_responses(scorer.model, scorer.tokenizer, [r], None if prompts is None else [prompts[i]])
        for i, r in enumerate(responses)
    ]
    return np.array([s.mean[0] for s in rows]), np.array([s.std[0] for s in rows])


def test_openrlhf_shaped_client_gets_correct_rewards_from_concurrent_single_query_requests(server, scorer):
    """As OpenRLHF's SingleTurnAgentExecutor does: one POST per rollout, many in flight, `scores` else `rewards`."""
    queries = [f"<|user|>{p}<eos><|assistant|>{c}" for p, c in zip(PROMPTS * 8, COMPLETIONS[::-1] * 8, strict=True)]
    queries = [q + " and more" * (i % 5) for i, q in enumerate(queries)]
    before = httpx.get(f"{server.url}/info", trust_env=False).json()["batching"]["forward_passes"]

    async def fetch_all():
        async with httpx.AsyncClient(timeout=180, trust_env=False) as client:
            async def post(query, prompt):
                payload = {"query": [query], "prompts": [prompt], "labels": [None]}
                response = await client.post(f"{server.url}/get_reward", json=payload)
                response.raise_for_status()
                reply = response.json()
                return reply["scores"] if reply.get("scores") is not None else reply["rewards"], reply["extra_logs"]

            return await asyncio.gather(*(post(q, q.split("<eos>")[0]) for q in queries))

    replies = asyncio.run(fetch_all())
    mu, sigma = direct(scorer, queries)
    np.testing.assert_allclose([r[0][0] for r in replies], mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r[1]["reward_sigma"][0] for r in replies], sigma, rtol=1e-5, atol=1e-6)
    forward_passes = httpx.get(f"{server.url}/info", trust_env=False).json()["batching"]["forward_passes"] - before
    assert forward_passes < len(queries)  # concurrent requests were batched together


def test_credentials_in_the_url_authenticate_like_openrlhfs_aiohttp(scorer):
    with ThreadedServer(create_app(scorer, ServeConfig(), token=TOKEN)) as server:
        host = server.url.removeprefix("http://")
        payload = {"query": ["a cat"], "prompts": ["a"], "labels": [None]}
        with httpx.Client(trust_env=False) as client:
            assert client.post(f"{server.url}/get_reward", json=payload).status_code == 401
            with_url_credentials = client.post(f"http://openrlhf:{TOKEN}@{host}/get_reward", json=payload)
            wrong = client.post(f"http://openrlhf:wrong-{TOKEN}@{host}/get_reward", json=payload)
        assert with_url_credentials.status_code == 200 and wrong.status_code == 401
        with RewardClient(server.url, token=TOKEN) as client:
            assert client.get_reward(["a cat"])["rewards"] == with_url_credentials.json()["rewards"]
        with pytest.raises(RewardServerError, match="401 unauthorized"):
            RewardClient(server.url, token="not-the-token-0123456789").info()


def test_reward_client_splits_long_lists_and_matches_direct_scores(server, scorer):
    responses = COMPLETIONS + [[{"role": "assistant", "content": "it is four"}]] * 2 + ["a cat"]
    prompts = PROMPTS + [[{"role": "user", "content": "two plus two"}]] * 2 + [None]
    with RewardClient(server.url, max_items_per_request=3) as client:
        result = client.score(responses, prompts, transforms=["quantile:0.9"])
        with pytest.raises(RewardServerError) as error:
            client.score(["a"], transforms=["lcb:-1"])
    mu, sigma = direct(scorer, responses, prompts)
    assert result.mu.shape == result.sigma.shape == (7, 1) and result.attributes == ["reward"]
    np.testing.assert_allclose(result.mu[:, 0], mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.sigma[:, 0], sigma, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.transforms["quantile:0.9"][:, 0], mu + norm.ppf(0.9) * sigma, rtol=1e-5,
                               atol=1e-5)
    assert len(result.num_tokens) == 7 and result.truncated == [False] * 7
    assert error.value.status == 400 and error.value.kind == "invalid_transform" and "kappa" in error.value.message


@pytest.mark.parametrize("transform", ["quantile:0.1", "random_quantile:0.05:0.5,seed:3"])
def test_remote_reward_function_equals_the_local_one(server, scorer, transform):
    remote = RemoteRewardFunction(server.url, transform=transform)
    local = GaussianRewardFunction(scorer.model, scorer.tokenizer, transform=transform, device="cpu")
    assert remote.__name__ == local.__name__.replace("gaussian_reward_", "remote_reward_")
    for _ in range(2):  # successive calls keep drawing from one seeded stream, as the local function does
        logged, columns = {}, {}
        rewards = remote(prompts=PROMPTS, completions=COMPLETIONS, completion_ids=[[1]] * 4,
                         log_metric=logged.__setitem__, log_extra=columns.__setitem__)
        expected = local(prompts=PROMPTS, completions=COMPLETIONS)
        assert isinstance(rewards, list) and all(isinstance(r, float) for r in rewards)
        np.testing.assert_allclose(rewards, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(remote.last_std, local.last_std, rtol=1e-5, atol=1e-6)
        assert logged[f"rewards/{remote.__name__}/sigma"] == pytest.approx(float(local.last_std.mean()), rel=1e-5)
        assert columns[f"{remote.__name__}_mu"] == pytest.approx(local.last_mean.tolist(), rel=1e-5, abs=1e-6)
    if remote.transform.is_random:
        assert len(set(remote.last_quantile_levels)) == 4


def test_remote_reward_function_normalizes_with_the_served_models_statistics(tmp_path, tokenizer_dir):
    path = save_reward_model(tmp_path / "rm", tokenizer_dir, seed=5)
    model = GaussianRewardModel.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    record_reward_statistics(model, [0.5, 1.0, 2.5, 4.0])
    model.save_pretrained(path)
    with ThreadedServer(create_app(RewardScorer.from_pretrained(str(path)), ServeConfig())) as server:
        remote = RemoteRewardFunction(server.url, transform="lcb:1.0,normalize")
        rewards = remote(prompts=PROMPTS, completions=COMPLETIONS)
    mu, sigma = direct(RewardScorer(model, tokenizer), COMPLETIONS, PROMPTS)
    stats_mean, stats_std = np.mean([0.5, 1.0, 2.5, 4.0]), np.std([0.5, 1.0, 2.5, 4.0])
    np.testing.assert_allclose(rewards, (mu - stats_mean) / stats_std - sigma / stats_std, rtol=1e-5, atol=1e-5)


def test_remote_reward_function_checks_the_server_at_construction(server):
    with pytest.raises(ValueError, match="records no reward statistics"):
        RemoteRewardFunction(server.url, transform="mean,normalize")
    with pytest.raises(httpx.TransportError):
        RemoteRewardFunction("http://127.0.0.1:9", client=RewardClient("http://127.0.0.1:9", retries=0))
    with pytest.raises(ValueError, match="needs `completions`"):
        RemoteRewardFunction(server.url)(prompts=PROMPTS)


@pytest.mark.slow
def test_grpo_trains_with_rewards_from_the_server(server, scorer, tiny_causal_lm_dir, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    reward = RemoteRewardFunction(server.url, transform="quantile:0.1")
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROMPTS * 2]})
    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
        max_steps=2, learning_rate=1e-2, bf16=False, report_to="none", logging_steps=1, save_strategy="no",
        disable_tqdm=True, seed=0,
    )
    trainer = GRPOTrainer(model=str(tiny_causal_lm_dir), reward_funcs=[reward], args=args, train_dataset=dataset)
    trainer.train()

    logs = trainer._logs
    received = np.array(logs["rewards"][reward.__name__])
    prompts, completions = list(logs["prompt"]), list(logs["completion"])
    assert len(received) == len(prompts) > 0
    mu, sigma = direct(scorer, completions, prompts)
    transform = RewardTransform.parse("quantile:0.1")
    np.testing.assert_allclose(received, transform(mu, sigma), rtol=1e-4, atol=1e-4)
    logged = [entry for entry in trainer.state.log_history if f"rewards/{reward.__name__}/sigma" in entry]
    assert logged and all(entry[f"rewards/{reward.__name__}/sigma"] > 0 for entry in logged)
