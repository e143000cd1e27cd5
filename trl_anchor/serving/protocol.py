"""Request validation and response shapes of the reward-model server.

`POST /get_reward` follows OpenRLHF's remote reward model protocol, checked against OpenRLHF at commit 3c3be62
(2026-08-13): its client (`openrlhf/utils/agent.py`, `SingleTurnAgentExecutor._fetch_rewards_via_http`) POSTs
`{"query": [str], "prompts": [str], "labels": [...]}` with aiohttp (`json=`, 180 s timeout, 5 tries), where each query
is the decoded rollout `tokenizer.decode(prompt_ids + response_ids, skip_special_tokens=False)`, i.e. prompt and
response already in the policy's chat template; it reads `"rewards"`, `"scores"` (falling back to `"rewards"`) and
`"extra_logs"` (a dict of per-query lists, logged per sample) from the reply. OpenRLHF's own server
(`openrlhf/cli/serve_rm.py`) answers `{"rewards": r, "scores": r, "extra_logs": {...}}` and uses only `query`.

```text
POST /get_reward  {"query": ["<prompt+response>", ...], "prompts": [...], "labels": [...]}
               -> {"rewards": [r, ...], "scores": [r, ...], "extra_logs": {"reward_mu": [...], "reward_sigma": [...]}}
```

Each query is scored as a plain-text response without a separate prompt (it already contains the prompt), by the
plain-text training rule: EOS appended unless the text already ends with it. `r` is the server's configured
`RewardTransform` of (μ, σ); `prompts` and `labels` are accepted and not used.

`POST /score` is the native endpoint. Values are item-major and attribute-minor, so a multi-attribute model adds
columns without changing the shape; `attributes` names the columns (`["reward"]` for a one-output model, the attribute
names of a multi-attribute one; its transforms combine the attributes with the weights in the model config):

```text
POST /score  {"responses": [text | messages, ...], "prompts": [text | messages | null, ...] (optional),
              "transforms": ["quantile:0.1", "lcb:1.0", ...] (optional)}
          -> {"model": ..., "attributes": ["reward"],
              "mu": [[μ], ...], "sigma": [[σ], ...] (null for a non-Gaussian model),
              "transforms": {"quantile:0.1": [[r], ...], ...},
              "num_tokens": [n, ...], "truncated": [false, ...]}
```

A text is a string or a list of chat messages `{"role": str, "content": str}` (scored through the reward model's own
chat template). A request's `random_quantile` transform draws one level per item; with `seed:<n>` every request
draws the same levels, so for RL prefer `trl_anchor.serving.RemoteRewardFunction`, which keeps one generator.

Errors are `{"error": {"type": <kind>, "message": <text>}}` with the HTTP status of `ApiError`.
"""

from dataclasses import dataclass, field
from typing import Any

from ..rewards.scoring import Text
from ..rewards.transforms import RewardTransform

MAX_TRANSFORMS_PER_REQUEST = 16


class ApiError(Exception):
    """An error answered to the client as `{"error": {"type": kind, "message": message}}` with `status`."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.kind, "message": self.message}}


@dataclass
class ScoreRequest:
    responses: list[Text]
    prompts: list[Text | None]
    transforms: list[str] = field(default_factory=list)


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _check_string(value: str, where: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(f"`{where}` contains an unpaired UTF-16 surrogate escape; send valid Unicode text.") from None
    return value


def _check_text(value: Any, where: str) -> Text:
    if isinstance(value, str):
        return _check_string(value, where)
    if isinstance(value, list) and value:
        for j, message in enumerate(value):
            is_dict = isinstance(message, dict)
            if not (is_dict and isinstance(message.get("role"), str) and isinstance(message.get("content"), str)):
                got = f"an object with keys {sorted(message)}" if is_dict else _type_name(message)
                expected = '{"role": string, "content": string}'
                raise _invalid(f"`{where}[{j}]` must be a chat message {expected}, got {got}.")
            _check_string(message["content"], f"{where}[{j}].content")
        return value
    raise _invalid(
        f"`{where}` must be a string or a non-empty array of chat messages, got {_type_name(value)}"
        f"{' (empty)' if value == [] else ''}."
    )


def _required_list(payload: dict, key: str, max_items: int) -> list:
    if key not in payload:
        raise _invalid(f"The request needs `{key}`: an array of texts.")
    values = payload[key]
    if not isinstance(values, list):
        raise _invalid(f"`{key}` must be an array, got {_type_name(values)}.")
    if not values:
        raise _invalid(f"`{key}` is empty; send at least one text.")
    if len(values) > max_items:
        raise ApiError(413, "too_many_items", f"`{key}` has {len(values)} items; the limit is {max_items}.")
    return values


def _optional_list(payload: dict, key: str, length: int, of: str) -> list | None:
    values = payload.get(key)
    if values is None:
        return None
    if not isinstance(values, list):
        raise _invalid(f"`{key}` must be an array or null, got {_type_name(values)}.")
    if len(values) != length:
        raise _invalid(f"`{key}` has {len(values)} items for {length} {of}; they must pair up one to one.")
    return values


def _check_object(payload: Any) -> dict:
    if not isinstance(payload, dict):
        raise _invalid(f"The request body must be a JSON object, got {_type_name(payload)}.")
    return payload


def parse_score_request(payload: Any, max_items: int) -> ScoreRequest:
    """Validate a `/score` body; every error names the field and item."""
    payload = _check_object(payload)
    unknown = sorted(set(payload) - {"responses", "prompts", "transforms"})
    if unknown:
        raise _invalid(f"Unknown field(s) {unknown}; `/score` takes `responses`, `prompts` and `transforms`.")
    raw_responses = _required_list(payload, "responses", max_items)
    responses = [_check_text(response, f"responses[{i}]") for i, response in enumerate(raw_responses)]
    raw_prompts = _optional_list(payload, "prompts", len(responses), "responses") or [None] * len(responses)
    prompts = []
    for i, (prompt, response) in enumerate(zip(raw_prompts, responses, strict=True)):
        if prompt is not None:
            prompt = _check_text(prompt, f"prompts[{i}]")
            if isinstance(prompt, str) != isinstance(response, str):
                raise _invalid(f"`prompts[{i}]` and `responses[{i}]` must both be strings or both chat messages.")
        prompts.append(prompt)
    return ScoreRequest(responses, prompts, _parse_transform_specs(payload.get("transforms")))


def _parse_transform_specs(specs: Any) -> list[str]:
    if specs is None:
        return []
    if not isinstance(specs, list) or not all(isinstance(spec, str) for spec in specs):
        raise _invalid('`transforms` must be an array of RewardTransform specs such as ["quantile:0.1"].')
    if len(specs) > MAX_TRANSFORMS_PER_REQUEST:
        raise _invalid(f"`transforms` names {len(specs)} transforms; the limit is {MAX_TRANSFORMS_PER_REQUEST}.")
    return list(dict.fromkeys(specs))


def build_transforms(specs: list[str], model_config: Any, is_gaussian: bool) -> dict[str, RewardTransform]:
    """Parse and bind each requested spec; a bad spec, a σ transform of a scalar model or a missing normalisation
    record is the client's error (400)."""
    transforms = {}
    for spec in specs:
        try:
            transform = RewardTransform.parse(spec)
            if transform.needs_std and not is_gaussian:
                raise ValueError(f"{spec!r} needs σ, which this (non-Gaussian) reward model does not predict.")
            transforms[spec] = transform.bind(model_config)
        except ValueError as error:
            raise ApiError(400, "invalid_transform", str(error)) from None
    return transforms


def parse_get_reward_request(payload: Any, max_items: int) -> list[str]:
    """Validate an OpenRLHF `/get_reward` body and return its queries (`prompts`/`labels` are checked, not used)."""
    payload = _check_object(payload)
    queries = _required_list(payload, "query", max_items)
    for i, query in enumerate(queries):
        if not isinstance(query, str):
            raise _invalid(f"`query[{i}]` must be a string (prompt and response decoded together), got "
                           f"{_type_name(query)}.")
        _check_string(query, f"query[{i}]")
    _optional_list(payload, "prompts", len(queries), "queries")
    _optional_list(payload, "labels", len(queries), "queries")
    return queries
