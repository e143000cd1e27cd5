"""Clients of `trl-anchor serve`: `RewardClient` for any Python program, and `RemoteRewardFunction`, a
`reward_funcs` entry for TRL's `GRPOTrainer`/`RLOOTrainer` that scores on a remote reward-model server.

The token defaults to `$TRL_ANCHOR_SERVE_TOKEN`. Proxy environment variables are ignored (`trust_env=False`) so the
token only ever goes to the server's own address.
"""

import os
import time
from dataclasses import dataclass, replace
from typing import Any

import httpx2 as httpx
import numpy as np

from ..rewards.reward_function import GaussianRewardFunction
from ..rewards.scoring import Text
from ..rewards.transforms import RewardTransform
from .config import TOKEN_ENV_VAR


class RewardServerError(RuntimeError):
    """An error answer of the server: HTTP `status`, error `kind` and its message."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(f"{status} {kind}: {message}")
        self.status, self.kind, self.message = status, kind, message


@dataclass
class ScoreResult:
    """`/score` results as arrays of shape (items, attributes); `sigma` is `None` for a non-Gaussian model."""

    mu: np.ndarray
    sigma: np.ndarray | None
    transforms: dict[str, np.ndarray]
    attributes: list[str]
    num_tokens: list[int]
    truncated: list[bool]


class RewardClient:
    """A small synchronous client of `trl-anchor serve`.

    Args:
        base_url (`str`, defaults to `"http://127.0.0.1:5000"`): the server.
        token (`str`, *optional*): bearer token; defaults to `$TRL_ANCHOR_SERVE_TOKEN` when set.
        timeout (`float`, defaults to `180.0`): seconds per HTTP request.
        max_items_per_request (`int`, defaults to `64`): longer lists are sent in several requests.
        retries (`int`, defaults to `3`): extra tries after a connection error or a 503 (overloaded, shutting down).

    Example:

    ```python
    >>> from trl_anchor.serving import RewardClient

    >>> client = RewardClient("http://127.0.0.1:5000")  # doctest: +SKIP
    >>> result = client.score(["Paris."], ["Capital of France?"], transforms=["quantile:0.1"])  # doctest: +SKIP
    >>> result.mu[0, 0], result.sigma[0, 0], result.transforms["quantile:0.1"][0, 0]  # doctest: +SKIP
    ```
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:5000",
        token: str | None = None,
        timeout: float = 180.0,
        max_items_per_request: int = 64,
        retries: int = 3,
    ):
        if max_items_per_request < 1:
            raise ValueError(f"`max_items_per_request` must be positive, got {max_items_per_request}.")
        token = token if token is not None else os.environ.get(TOKEN_ENV_VAR)
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self.base_url = base_url.rstrip("/")
        self.max_items_per_request = max_items_per_request
        self.retries = retries
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, trust_env=False)

    def __enter__(self) -> "RewardClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    def info(self) -> dict[str, Any]:
        return self._request("GET", "/info")

    def score(
        self, responses: list[Text], prompts: list[Text] | None = None, transforms: list[str] | None = None
    ) -> ScoreResult:
        """μ, σ and the named transforms of each response (optionally with its prompt), in input order."""
        if prompts is not None and len(prompts) != len(responses):
            raise ValueError(f"Got {len(prompts)} prompts for {len(responses)} responses.")
        parts = []
        for start in range(0, len(responses), self.max_items_per_request):
            stop = start + self.max_items_per_request
            payload = {"responses": responses[start:stop], "transforms": list(transforms or [])}
            if prompts is not None:
                payload["prompts"] = prompts[start:stop]
            parts.append(self._request("POST", "/score", payload))
        if not parts:
            raise ValueError("Nothing to score: `responses` is empty.")
        sigma = None if parts[0]["sigma"] is None else np.concatenate([np.asarray(p["sigma"]) for p in parts])
        return ScoreResult(
            mu=np.concatenate([np.asarray(p["mu"], dtype=np.float64) for p in parts]),
            sigma=sigma,
            transforms={
                spec: np.concatenate([np.asarray(p["transforms"][spec], dtype=np.float64) for p in parts])
                for spec in parts[0]["transforms"]
            },
            attributes=parts[0]["attributes"],
            num_tokens=[n for p in parts for n in p["num_tokens"]],
            truncated=[t for p in parts for t in p["truncated"]],
        )

    def get_reward(self, queries: list[str], prompts: list[str] | None = None, labels: list | None = None) -> dict:
        """One OpenRLHF-shaped `/get_reward` call: `{"rewards", "scores", "extra_logs"}`."""
        return self._request("POST", "/get_reward", {"query": queries, "prompts": prompts, "labels": labels})

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict[str, Any]:
        for attempt in range(self.retries + 1):
            last_try = attempt == self.retries
            try:
                response = self._http.request(method, path, json=payload)
            except httpx.TransportError:
                if last_try:
                    raise
            else:
                if response.status_code != 503 or last_try:
                    return _decode(response)
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")


def _decode(response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        kind, message = error.get("type", "http_error"), error.get("message", response.text)
        raise RewardServerError(response.status_code, kind, message)
    return body


class RemoteRewardFunction:
    """A `reward_funcs` entry for TRL's `GRPOTrainer`/`RLOOTrainer` that scores on a `trl-anchor serve` server.

    The server returns μ and σ; the `RewardTransform` is applied here, with one generator for the whole run (and one
    stream per data-parallel rank), exactly as `GaussianRewardFunction` applies it to a local model. After each call,
    `last_mean`, `last_std`, `last_rewards` and `last_quantile_levels` hold what was computed, and the same metrics
    and completion columns are logged as by `GaussianRewardFunction`.

    Args:
        url (`str`, defaults to `"http://127.0.0.1:5000"`): the server.
        transform (`str` or `RewardTransform`, defaults to `"mean"`): e.g. `"quantile:0.1"`; `normalize` uses the
            statistics recorded in the served model's config.
        token (`str`, *optional*): bearer token; defaults to `$TRL_ANCHOR_SERVE_TOKEN`.
        name (`str`, *optional*): the name TRL logs the reward under; defaults to e.g. `remote_reward_quantile_0.1`.
        client (`RewardClient`, *optional*): a configured client (then `url`/`token` are not used).

    Example:

    ```python
    >>> from trl import GRPOConfig, GRPOTrainer
    >>> from trl_anchor.serving import RemoteRewardFunction

    >>> reward = RemoteRewardFunction("http://127.0.0.1:5000", transform="quantile:0.1")  # doctest: +SKIP
    >>> trainer = GRPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", reward_funcs=[reward], ...)  # doctest: +SKIP
    ```
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:5000",
        transform: str | RewardTransform = "mean",
        token: str | None = None,
        name: str | None = None,
        client: RewardClient | None = None,
    ):
        self.client = client if client is not None else RewardClient(url, token=token)
        info = self.client.info()  # fail at construction, before any rollout, if the server is wrong
        transform = RewardTransform.parse(transform)
        if transform.needs_std and info["reward_type"] != "gaussian":
            raise ValueError(
                f"Reward transform {str(transform)!r} needs σ, but the served model {info['model']!r} is not a "
                "Gaussian reward model; use transform='mean'."
            )
        if transform.normalize:
            if info.get("reward_normalization") is None:
                raise ValueError(
                    f"Reward transform {str(transform)!r} normalises rewards, but the served model records no reward "
                    "statistics (`trl_anchor.record_reward_statistics`)."
                )
            transform = replace(transform, normalization=info["reward_normalization"])
        self.transform = transform.for_current_process()
        self.__name__ = name or "remote_reward_" + str(self.transform).replace(":", "_").replace(",", "_")
        self.last_mean = self.last_std = self.last_rewards = self.last_quantile_levels = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r}, url={self.client.base_url!r})"

    def __call__(
        self, prompts: list[Text] | None = None, completions: list[Text] | None = None, **kwargs
    ) -> list[float]:
        if completions is None:
            raise ValueError("RemoteRewardFunction needs `completions` (and usually `prompts`) to score.")
        result = self.client.score(completions, prompts)
        mean = result.mu[:, 0]
        std = None if result.sigma is None else result.sigma[:, 0]
        levels = self.transform.quantile_levels(len(completions)) if self.transform.is_random else None
        rewards = self.transform(mean, std, quantile_levels=levels)
        self.last_mean, self.last_std, self.last_rewards = mean, std, rewards
        self.last_quantile_levels = None if levels is None else levels.numpy()
        # The same metric names and completion columns as a local GaussianRewardFunction.
        GaussianRewardFunction._log(self, kwargs.get("log_metric"), kwargs.get("log_extra"))
        return rewards.tolist()
