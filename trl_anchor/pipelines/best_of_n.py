"""Best-of-N with a Gaussian reward model: generate N completions per prompt, score them (μ, σ), select risk-aware,
evaluate the choices with a gold reward, and draw best-of-n curves for every n ≤ N from the one pool.

Every stage is cached in `output_dir` as a jsonl file keyed by `(prompt_id, sample_index)` plus a `<stage>.meta.json`
fingerprint (model, sampling settings, N, ...), and appends after every batch: an interrupted run resumes where it
stopped and recomputes nothing that finished, and a cache written with other settings is refused with an error that
says what differs. Stages:

| stage      | file                | rows                                                              |
|------------|---------------------|-------------------------------------------------------------------|
| `generate` | `generations.jsonl` | completion text, its number of new tokens and finish reason       |
| `score`    | `scores.jsonl`      | μ and σ² of the reward model (σ² is null for a Bradley–Terry RM)  |
| `evaluate` | `gold.jsonl`        | the gold reward                                                   |
| `select`   | `selections.jsonl`, `best_of_n.json`, `best_of_n.md`, `best_of_n.png` | picks and curves |

Selection policies are `trl_anchor.rewards.transforms.RewardTransform` specs (`"mean"`, `"quantile:0.1"`, `"lcb:1.0"`,
`"random_quantile:0.05:0.5"`, `"variance_penalty:0.5"`, ...) plus `"random"` (uniform choice) and `"oracle"`
(choose by the gold reward itself, the upper reference).

The curves use the exact unbiased best-of-n estimator rather than resampling: with the N items of a pool sorted by
selection score, the item of rank i (1 = lowest) is the best of a uniformly random n-subset with probability
C(i−1, n−1) / C(N, n), and items tied in selection score share their gold reward equally (a tie is broken uniformly at
random).
"""

import hashlib
import importlib
import importlib.util
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging
from trl.data_utils import is_conversational

from ..models.modeling_gaussian import GAUSSIAN_CONFIG_KEY, GaussianRewardModel, gaussian_settings, is_gaussian_config
from ..rewards.scoring import Text, score_responses
from ..rewards.transforms import RewardTransform

logger = logging.get_logger(__name__)

DEFAULT_POLICIES = ("mean", "quantile:0.1", "lcb:1.0", "random")
REFERENCE_POLICIES = ("random", "oracle")
STAGES = ("generate", "score", "evaluate", "select")

GoldScorer = Callable[[list[Text], list[Text]], Sequence[float]]
Key = tuple[str, int]


class BestOfNCacheError(ValueError):
    """A stage cache that does not belong to this run (other N, model, settings or prompts) or cannot be read."""


class GoldScorerError(RuntimeError):
    """The gold scorer failed or returned something unusable; the message names the prompts and samples involved."""


# ============================================================================================ unbiased estimator
def best_of_n_weights(pool_size: int, n: int) -> np.ndarray:
    """P(the item of rank i is the best of a uniformly random n-subset of a pool of `pool_size`), for ranks
    i = 1..N in ascending order of selection score: C(i−1, n−1) / C(N, n) (zero for i < n).

    Computed as a running product of ratios ≤ 1 from the top rank down, so it neither overflows for large pools nor
    loses the exact values of small ones.

    Example:

    ```python
    >>> best_of_n_weights(4, 2).tolist()
    [0.0, 0.16666666666666666, 0.3333333333333333, 0.5]
    ```
    """
    if not 1 <= n <= pool_size:
        raise ValueError(f"n must lie in [1, pool size = {pool_size}], got n={n}.")
    weights = np.zeros(pool_size, dtype=np.float64)
    # w(N) = n/N and w(i) = w(i+1) · (i−n+1)/i for n ≤ i < N.
    ranks = np.arange(n, pool_size, dtype=np.float64)
    ratios = (ranks - n + 1) / ranks
    weights[n - 1 :] = (n / pool_size) * np.append(np.cumprod(ratios[::-1])[::-1], 1.0)
    return weights


def _tie_averaged(sorted_scores: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Replace each value by the mean value of its block of equal scores (rows sorted ascending by score)."""
    new_block = np.ones_like(sorted_scores, dtype=bool)
    new_block[..., 1:] = sorted_scores[..., 1:] != sorted_scores[..., :-1]
    if new_block.all():
        return sorted_values
    averaged = np.empty_like(sorted_values)
    for row in range(sorted_values.shape[0]):
        block = np.cumsum(new_block[row]) - 1
        means = np.bincount(block, weights=sorted_values[row]) / np.bincount(block)
        averaged[row] = means[block]
    return averaged


def best_of_n_curve(scores: Any, values: Any, ns: Sequence[int] | None = None) -> np.ndarray:
    """Expected `values` of the item with the highest selection score among n items drawn uniformly without
    replacement from each pool, exactly, for every n in `ns` (default 1..N).

    `scores` and `values` have shape `(N,)` (one pool) or `(num_pools, N)`; the result has shape `(len(ns),)` or
    `(num_pools, len(ns))`. n = 1 gives the pool mean, n = N the value of the top-scored item; tied scores share
    their values equally.

    Example:

    ```python
    >>> best_of_n_curve([0.1, 0.9, 0.5, 0.5], [1.0, 4.0, 2.0, 3.0]).tolist()
    [2.5, 3.25, 3.625, 4.0]
    ```
    """
    scores, values = np.asarray(scores, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if scores.shape != values.shape or scores.ndim not in (1, 2) or scores.shape[-1] == 0:
        raise ValueError(
            f"`scores` and `values` must have the same shape (N,) or (num_pools, N) with N ≥ 1, got {scores.shape} "
            f"and {values.shape}."
        )
    for name, array in (("scores", scores), ("values", values)):
        if not np.isfinite(array).all():
            where = np.argwhere(~np.isfinite(array))[0].tolist()
            raise ValueError(f"`{name}` must be finite; found {array[tuple(where)]} at index {where}.")
    single = scores.ndim == 1
    scores, values = np.atleast_2d(scores), np.atleast_2d(values)
    pool_size = scores.shape[-1]
    ns = list(range(1, pool_size + 1)) if ns is None else [int(n) for n in ns]
    order = np.argsort(scores, axis=-1, kind="stable")
    sorted_values = _tie_averaged(np.take_along_axis(scores, order, -1), np.take_along_axis(values, order, -1))
    weights = np.stack([best_of_n_weights(pool_size, n) for n in ns], axis=-1)
    curves = sorted_values @ weights
    return curves[0] if single else curves


def best_of_n_expectation(scores: Any, values: Any, n: int) -> float | np.ndarray:
    """`best_of_n_curve` at a single n: a float for one pool, an array with one value per pool otherwise."""
    curve = best_of_n_curve(scores, values, [n])[..., 0]
    return float(curve) if np.ndim(curve) == 0 else curve


# ============================================================================================ selection policies
def policy_scores(
    policy: str,
    mean: np.ndarray,
    std: np.ndarray | None = None,
    gold: np.ndarray | None = None,
    reward_config: PretrainedConfig | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Selection scores of a policy for arrays of μ (and σ): higher is chosen.

    `"random"` gives every item the same score (the estimator then averages over the pool: a uniform choice),
    `"oracle"` scores by `gold`, anything else is a `RewardTransform` spec applied to (μ, σ). A `normalize` spec
    reads its statistics from `reward_config`; an unseeded `random_quantile` is seeded with `seed` so that a report
    can be reproduced.

    Example:

    ```python
    >>> policy_scores("lcb:1.0", np.array([1.0, 2.0]), np.array([0.1, 2.0])).tolist()
    [0.9, 0.0]
    ```
    """
    mean = np.asarray(mean, dtype=np.float64)
    if policy == "random":
        return np.zeros_like(mean)
    if policy == "oracle":
        if gold is None:
            raise ValueError("The `oracle` policy selects by the gold reward; run the `evaluate` stage first.")
        return np.asarray(gold, dtype=np.float64)
    transform = RewardTransform.parse(policy)
    if transform.needs_std and std is None:
        raise ValueError(
            f"Selection policy {policy!r} needs σ, but the reward model is not Gaussian (it predicts no variance); "
            "use `mean` or `random`, or score with a GaussianRewardModel."
        )
    if transform.is_random and transform.seed is None:
        transform = replace(transform, seed=seed)
    if transform.normalize:
        if reward_config is None:
            raise ValueError(f"Selection policy {policy!r} normalises rewards; pass the reward model's config.")
        transform = transform.bind(reward_config)
    flat_std = None if std is None else np.asarray(std, dtype=np.float64).reshape(-1)
    return np.asarray(transform(mean.reshape(-1), flat_std), dtype=np.float64).reshape(mean.shape)


def check_policies(policies: Sequence[str], gaussian: bool = True) -> list[str]:
    """Validate policy names/specs up front (before any expensive stage) and return them de-duplicated."""
    if not policies:
        raise ValueError(f"Give at least one selection policy, e.g. {list(DEFAULT_POLICIES)}.")
    for policy in policies:
        if policy in REFERENCE_POLICIES:
            continue
        transform = RewardTransform.parse(policy)
        if transform.needs_std and not gaussian:
            raise ValueError(f"Selection policy {policy!r} needs σ, which a non-Gaussian reward model does not give.")
    return list(dict.fromkeys(policies))


# ============================================================================================ stage caches
def fingerprint(value: Any) -> str:
    """Short stable hash of JSON-serialisable data (a prompt, a completion), stored with cached rows to detect
    changes."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class StageCache:
    """Rows of one stage in `<directory>/<name>.jsonl`, keyed by `(prompt_id, sample_index)`, with the settings
    that produced them in `<name>.meta.json`.

    Opening checks that the stored settings equal the requested ones (raising `BestOfNCacheError` with each
    difference otherwise), reads the rows, and repairs a last line cut short by a crash (it is re-computed).
    """

    def __init__(self, directory: str | os.PathLike, name: str, settings: dict[str, Any], required: Sequence[str]):
        self.directory = Path(directory)
        self.name = name
        self.path = self.directory / f"{name}.jsonl"
        self.meta_path = self.directory / f"{name}.meta.json"
        self.settings = json.loads(json.dumps(settings, default=str))
        self.required = ("prompt_id", "sample_index", *required)
        self.rows: dict[Key, dict[str, Any]] = {}

    def open(self) -> "StageCache":
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.meta_path.is_file():
            self._check_settings(json.loads(self.meta_path.read_text()))
        elif self.path.is_file() and self.path.stat().st_size > 0:
            raise BestOfNCacheError(f"{self.path} exists without its {self.meta_path.name}; cannot tell what made it.")
        self.rows = self._read_rows() if self.path.is_file() else {}
        return self

    def _check_settings(self, stored: dict[str, Any]) -> None:
        keys = sorted(set(stored) | set(self.settings))
        differences = [
            f"{key}: cached {stored.get(key)!r}, requested {self.settings.get(key)!r}"
            for key in keys
            if stored.get(key) != self.settings.get(key)
        ]
        if differences:
            raise BestOfNCacheError(
                f"The {self.name} cache in {self.directory} was written with other settings:\n  "
                + "\n  ".join(differences)
                + f"\nUse another output_dir, or delete {self.path.name} and {self.meta_path.name} (and the stages "
                "after it) to recompute."
            )

    def _read_rows(self) -> dict[Key, dict[str, Any]]:
        rows: dict[Key, dict[str, Any]] = {}
        lines = self.path.read_text(encoding="utf-8").split("\n")
        complete_lines = lines[:-1]  # the text after the last newline is an unfinished write (or empty)
        if lines[-1].strip():
            logger.warning(f"{self.path}: the last line was cut short by an interruption; recomputing that row.")
            self.path.write_text("".join(line + "\n" for line in complete_lines), encoding="utf-8")
        for number, line in enumerate(complete_lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise BestOfNCacheError(f"{self.path}, line {number}: not valid JSON ({error}).") from None
            missing = [column for column in self.required if column not in row]
            if missing:
                raise BestOfNCacheError(f"{self.path}, line {number}: missing field(s) {missing}.")
            key = (str(row["prompt_id"]), int(row["sample_index"]))
            if key in rows:
                raise BestOfNCacheError(
                    f"{self.path}, line {number}: duplicate row for prompt {key[0]!r} sample {key[1]}."
                )
            rows[key] = row
        return rows

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write rows and flush them to disk before returning, so a later crash keeps them."""
        if not self.meta_path.is_file():
            # Written with the first rows, not at open: a run that fails before producing anything binds nothing.
            self.meta_path.write_text(json.dumps(self.settings, indent=2, sort_keys=True) + "\n")
        with self.path.open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        for row in rows:
            self.rows[(str(row["prompt_id"]), int(row["sample_index"]))] = row

    def __contains__(self, key: Key) -> bool:
        return key in self.rows


def _model_name(model: PreTrainedModel) -> str:
    return model.name_or_path or type(model).__name__


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_batch_size(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"`{name}` must be ≥ 1, got {value}.")


# ============================================================================================ generation
@dataclass
class GenerationSettings:
    """Sampling settings of the `generate` stage (all but `batch_size` and `backend` are part of the cache
    fingerprint).

    Args:
        temperature (`float`, defaults to `1.0`): sampling temperature; 0 means greedy decoding (then the N samples
            of a prompt are identical, which defeats best-of-N).
        top_p (`float`, defaults to `1.0`): nucleus sampling mass.
        top_k (`int`, defaults to `0`): keep only the k most likely tokens (0 disables it).
        max_new_tokens (`int`, defaults to `128`): length limit of a completion.
        seed (`int`, defaults to `0`): each batch is seeded from (seed, its first prompt id and sample index), so a
            run is reproducible and a resumed one draws new samples only for what is missing.
        batch_size (`int`, defaults to `16`): sequences per `generate` call.
        backend (`str`, defaults to `"auto"`): `"transformers"`, `"vllm"`, or `"auto"` (vLLM when it is installed
            and a GPU is present, transformers otherwise).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 128
    seed: int = 0
    batch_size: int = 16
    backend: str = "auto"

    def __post_init__(self):
        if self.temperature < 0 or not math.isfinite(self.temperature):
            raise ValueError(f"`temperature` must be ≥ 0, got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"`top_p` must lie in (0, 1], got {self.top_p}.")
        if self.top_k < 0:
            raise ValueError(f"`top_k` must be ≥ 0, got {self.top_k}.")
        _check_batch_size("max_new_tokens", self.max_new_tokens)
        _check_batch_size("batch_size", self.batch_size)
        if self.backend not in ("auto", "transformers", "vllm"):
            raise ValueError(f"`backend` must be 'auto', 'transformers' or 'vllm', got {self.backend!r}.")

    def fingerprint(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("batch_size", "backend")}

    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        return "vllm" if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available() else "transformers"


@dataclass
class Generated:
    text: str
    num_tokens: int
    finish_reason: str  # "stop" (an end-of-sequence token) or "length" (hit max_new_tokens)


def derive_seed(seed: int, prompt_id: str, sample_index: int) -> int:
    """A 63-bit seed that depends only on (seed, prompt id, sample index), stable across processes and runs."""
    digest = hashlib.sha256(f"{seed}|{prompt_id}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Text) -> str:
    """The text a policy continues: conversational prompts go through its chat template with the generation prompt."""
    if isinstance(prompt, str):
        return prompt
    if not tokenizer.chat_template:
        raise ValueError(
            f"A conversational prompt needs a policy tokenizer with a chat template; {type(tokenizer).__name__} has "
            "none. Set `tokenizer.chat_template` or give text prompts."
        )
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def _prompt_token_ids(tokenizer: PreTrainedTokenizerBase, prompt: Text) -> list[int]:
    # A rendered chat template already holds its special tokens (e.g. BOS); do not add them twice.
    return list(tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=isinstance(prompt, str))["input_ids"])


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    eos = tokenizer.eos_token_id if eos is None else eos
    return set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])


@torch.no_grad()
def generate_transformers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    settings: GenerationSettings,
    seed: int,
) -> list[Generated]:
    """One batched, left-padded `model.generate` call; seeded without disturbing the caller's global RNG."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError(f"The policy tokenizer {type(tokenizer).__name__} has neither a pad nor an EOS token.")
    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(prompt_ids):  # left padding: every row's continuation starts at the same column
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    device = next(model.parameters()).device
    sampling = settings.temperature > 0
    kwargs = dict(do_sample=sampling, max_new_tokens=settings.max_new_tokens, pad_token_id=pad_id)
    if sampling:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k or None)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        output = model.generate(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **kwargs
        )
    eos_ids = _eos_token_ids(model, tokenizer)
    results = []
    for row in output[:, width:].tolist():
        stop = next((i for i, token in enumerate(row) if token in eos_ids), None)
        tokens = row if stop is None else row[:stop]
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        results.append(Generated(text, len(tokens), "length" if stop is None else "stop"))
    return results


def generate_vllm(
    model_name_or_path: str,
    prompt_ids: list[list[int]],
    num_samples: list[int],
    settings: GenerationSettings,
    seeds: list[int],
) -> list[list[Generated]]:
    """`num_samples[i]` completions of each tokenized prompt with vLLM (one seeded request per prompt). Token ids,
    not text, go in, so vLLM adds no second BOS to a rendered chat template."""
    from vllm import SamplingParams

    llm = _vllm_engine(model_name_or_path, settings.seed)
    params = [
        SamplingParams(
            n=n, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k or -1,  # -1: no top-k
            max_tokens=settings.max_new_tokens, seed=seed,
        )
        for n, seed in zip(num_samples, seeds)
    ]
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
    return [
        [Generated(o.text, len(o.token_ids), "length" if o.finish_reason == "length" else "stop") for o in out.outputs]
        for out in outputs
    ]


_VLLM_ENGINES: dict[tuple[str, int], Any] = {}


def _vllm_engine(model_name_or_path: str, seed: int):
    # Building a vLLM engine takes minutes; keep one per model for the life of the process.
    key = (model_name_or_path, seed)
    if key not in _VLLM_ENGINES:
        from vllm import LLM

        _VLLM_ENGINES[key] = LLM(model=model_name_or_path, seed=seed)
    return _VLLM_ENGINES[key]


# ============================================================================================ scoring helpers
def load_reward_model(path: str, device: str | torch.device | None = None, **kwargs):
    """A reward model and its tokenizer: a `GaussianRewardModel` when the checkpoint is Gaussian, else a plain
    sequence-classification model with one output (a Bradley–Terry RM; then only `mean`/`random` select)."""
    config = AutoConfig.from_pretrained(path)
    if is_gaussian_config(config):
        model = GaussianRewardModel.from_pretrained(path, **kwargs)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        if model.config.num_labels != 1:
            raise ValueError(
                f"{path} has num_labels={model.config.num_labels}; a reward model must output one score per sequence."
            )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), AutoTokenizer.from_pretrained(path)


def as_completion(prompt: Text, completion: str) -> Text:
    """A generated completion in the prompt's format: an assistant message after a conversational prompt."""
    return [{"role": "assistant", "content": completion}] if is_conversational({"prompt": prompt}) else completion


def _describe_items(keys: Sequence[Key], limit: int = 4) -> str:
    by_prompt: dict[str, list[int]] = {}
    for prompt_id, sample in keys:
        by_prompt.setdefault(prompt_id, []).append(sample)
    parts = [f"prompt {pid!r} sample(s) {samples}" for pid, samples in list(by_prompt.items())[:limit]]
    more = len(by_prompt) - limit
    return "; ".join(parts) + (f"; and {more} more prompt(s)" if more > 0 else "")


def call_gold_scorer(
    scorer: GoldScorer, prompts: list[Text], completions: list[Text], keys: Sequence[Key], name: str
) -> list[float]:
    """Call a `(prompts, completions) -> scores` gold scorer and check its answer, naming the prompts and samples of
    the batch in any error."""
    try:
        scores = scorer(prompts, completions)
    except Exception as error:
        raise GoldScorerError(
            f"Gold scorer {name} failed on a batch of {len(keys)} completions ({_describe_items(keys)}): "
            f"{type(error).__name__}: {error}"
        ) from error
    try:
        scores = [float(s) for s in scores]
    except (TypeError, ValueError) as error:
        raise GoldScorerError(
            f"Gold scorer {name} must return one number per completion; got {type(scores).__name__} for "
            f"{_describe_items(keys)} ({error})."
        ) from error
    if len(scores) != len(keys):
        raise GoldScorerError(
            f"Gold scorer {name} returned {len(scores)} scores for {len(keys)} completions ({_describe_items(keys)})."
        )
    bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
    if bad:
        prompt_id, sample = keys[bad[0]]
        raise GoldScorerError(
            f"Gold scorer {name} returned {scores[bad[0]]} for prompt {prompt_id!r} sample {sample} "
            f"({len(bad)} non-finite score(s) in this batch)."
        )
    return scores


def gold_scorer_name(spec: "str | GoldScorer") -> str:
    """The name a gold scorer is recorded under in the cache: the string given, or a callable's qualified name."""
    return spec if isinstance(spec, str) else getattr(spec, "__qualname__", type(spec).__name__)


def load_gold_scorer(spec: "str | GoldScorer", batch_size: int = 16, max_length: int | None = None) -> GoldScorer:
    """Resolve a gold scorer: a callable is used as is; `"package.module:function"` imports one; any other string is
    a sequence-classification reward model (local path or Hub id) whose logit (μ for a Gaussian RM) is the gold
    reward."""
    if callable(spec):
        return spec
    if ":" in spec and not Path(spec).exists():
        module_name, _, attribute = spec.partition(":")
        try:
            scorer = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ValueError(
                f"Cannot import the gold scorer {spec!r} (expected 'package.module:function'): {error}"
            ) from error
        if not callable(scorer):
            raise ValueError(f"Gold scorer {spec!r} is not callable.")
        return scorer
    model = AutoModelForSequenceClassification.from_pretrained(spec)
    if model.config.num_labels != 1:
        raise ValueError(
            f"Gold reward model {spec} has num_labels={model.config.num_labels}; it must output one score."
        )
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    tokenizer = AutoTokenizer.from_pretrained(spec)

    def score_with_model(prompts: list[Text], completions: list[Text]) -> list[float]:
        return score_responses(model, tokenizer, completions, prompts, batch_size, max_length).mean.tolist()

    return score_with_model


# ============================================================================================ pool and report
@dataclass
class BestOfNPool:
    """All cached results of a run as `(num_prompts, N)` arrays (`std`/`gold` are None when not available)."""

    prompt_ids: list[str]
    prompts: list[Text]
    completions: list[list[str]]
    mean: np.ndarray
    std: np.ndarray | None
    gold: np.ndarray | None
    reward_config: PretrainedConfig | None = None

    @property
    def num_samples(self) -> int:
        return self.mean.shape[1]


@dataclass
class BestOfNCurve:
    """A policy's best-of-n curve: mean over pools (prompts/contests) and its standard error, per n."""

    mean: list[float]
    se: list[float]

    @classmethod
    def from_pools(cls, per_pool: np.ndarray) -> "BestOfNCurve":
        count = per_pool.shape[0]
        se = per_pool.std(0, ddof=1) / math.sqrt(count) if count > 1 else np.zeros(per_pool.shape[1])
        return cls(mean=per_pool.mean(0).tolist(), se=se.tolist())


@dataclass
class BestOfNReport:
    """Best-of-n curves per policy for one or more metrics (e.g. `gold`, `proxy` = the reward model's μ).

    `vs_random[metric][policy]` is the curve of the per-pool difference policy − random: its standard error is the
    paired one, much smaller than the spread between pools that every policy shares.
    """

    ns: list[int]
    num_pools: int
    pool_size: int
    curves: dict[str, dict[str, BestOfNCurve]]  # metric -> policy -> curve
    vs_random: dict[str, dict[str, BestOfNCurve]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def value(self, metric: str, policy: str, n: int | None = None) -> float:
        n = self.pool_size if n is None else n
        return self.curves[metric][policy].mean[self.ns.index(n)]

    def to_dict(self) -> dict[str, Any]:
        def as_dicts(table):
            return {metric: {p: asdict(c) for p, c in by_policy.items()} for metric, by_policy in table.items()}

        return {"ns": self.ns, "num_pools": self.num_pools, "pool_size": self.pool_size,
                "curves": as_dicts(self.curves), "vs_random": as_dicts(self.vs_random), "metadata": self.metadata}

    def to_markdown(self, metric: str, title: str, max_columns: int = 8) -> str:
        """A table of `metric` at n = 1, 2, 4, ..., N (± standard error over pools), plus the gain over `random` at
        n = N (± paired standard error)."""
        shown = log_grid(self.pool_size, max_columns)
        deltas = self.vs_random.get(metric, {})
        header = ["policy", *(f"n={n}" for n in shown)]
        if deltas:
            header.append(f"vs random @ n={self.pool_size}")
        lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        for policy, curve in self.curves[metric].items():
            cells = [f"{curve.mean[self.ns.index(n)]:.4f} ± {curve.se[self.ns.index(n)]:.4f}" for n in shown]
            if deltas:
                cells.append(f"{deltas[policy].mean[-1]:+.4f} ± {deltas[policy].se[-1]:.4f}")
            lines.append(f"| {policy} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def log_grid(pool_size: int, max_points: int = 8) -> list[int]:
    """n = 1, 2, 4, ... up to N (always including N), thinned to at most `max_points` values."""
    grid = sorted({2**k for k in range(int(math.log2(pool_size)) + 1)} | {pool_size})
    if len(grid) > max_points:
        keep = np.unique(np.linspace(0, len(grid) - 1, max_points).round().astype(int))
        grid = [grid[i] for i in keep]
    return grid


def best_of_n_report(
    selection: dict[str, np.ndarray], metrics: dict[str, np.ndarray], metadata: dict[str, Any] | None = None
) -> BestOfNReport:
    """Curves of every metric (values `(num_pools, N)`) for every policy (selection scores `(num_pools, N)`), and of
    each policy's per-pool difference to `random` when that policy is present."""
    num_pools, pool_size = next(iter(metrics.values())).shape
    ns = list(range(1, pool_size + 1))
    curves, vs_random = {}, {}
    for metric, values in metrics.items():
        per_pool = {policy: best_of_n_curve(scores, values, ns) for policy, scores in selection.items()}
        curves[metric] = {policy: BestOfNCurve.from_pools(c) for policy, c in per_pool.items()}
        if "random" in per_pool:
            vs_random[metric] = {p: BestOfNCurve.from_pools(c - per_pool["random"]) for p, c in per_pool.items()}
    return BestOfNReport(ns, num_pools, pool_size, curves, vs_random, metadata or {})


def plot_best_of_n(
    report: BestOfNReport,
    path: str | os.PathLike,
    panels: Sequence[tuple[str, str]],
    title: str | None = None,
    xlabel: str = "n (candidates per prompt)",
) -> Path:
    """Save a PNG of best-of-n curves: one panel per `(metric, y label)`, x = n on a log scale, one labelled line per
    policy with a ±1 standard-error band; `random` and `oracle` are drawn dashed as references."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.5), squeeze=False)
    ns = np.asarray(report.ns)
    for ax, (metric, ylabel) in zip(axes[0], panels):
        for policy, curve in report.curves[metric].items():
            mean, se = np.asarray(curve.mean), np.asarray(curve.se)
            style = {}
            if policy in REFERENCE_POLICIES:
                style = {"linestyle": "--", "color": "black" if policy == "oracle" else "gray"}
            (line,) = ax.plot(ns, mean, label=policy, linewidth=1.8, **style)
            ax.fill_between(ns, mean - se, mean + se, color=line.get_color(), alpha=0.1, linewidth=0)
        ax.set_xscale("log", base=2)
        ticks = log_grid(report.pool_size, 12)
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"Best-of-n ({report.num_pools} pools of N = {report.pool_size})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ============================================================================================ the pipeline
class BestOfNPipeline:
    """Resumable best-of-N over a fixed set of prompts, cached in `output_dir`.

    Args:
        prompts (list of `str` or message lists): the prompts, text or conversational (TRL's formats).
        output_dir (`str`): where the stage caches and the report go.
        num_samples (`int`): N, completions per prompt.
        prompt_ids (list of `str`, *optional*): stable ids (default: the position, "0", "1", ...). Cached rows are
            keyed by them and checked against a hash of the prompt, so a changed prompt under the same id is refused.
        show_progress (`bool`, defaults to `True`): tqdm progress bars on the long stages.

    Example:

    ```python
    >>> from trl_anchor.pipelines.best_of_n import BestOfNPipeline, GenerationSettings

    >>> pipe = BestOfNPipeline([[{"role": "user", "content": "Tell me a joke."}]], "outputs/bon", num_samples=16)
    >>> pipe.generate("Qwen/Qwen2.5-0.5B-Instruct", settings=GenerationSettings(temperature=0.8, max_new_tokens=64))
    >>> pipe.score("my-gaussian-rm")
    >>> pipe.evaluate("Skywork/Skywork-Reward-V2-Llama-3.1-8B")  # or a callable (prompts, completions) -> scores
    >>> report = pipe.select(["mean", "quantile:0.1", "lcb:1.0", "random"])
    >>> report.value("gold", "lcb:1.0", n=16)
    ```
    """

    def __init__(
        self,
        prompts: Sequence[Text],
        output_dir: str | os.PathLike,
        num_samples: int,
        prompt_ids: Sequence[Any] | None = None,
        show_progress: bool = True,
    ):
        _check_batch_size("num_samples", num_samples)
        if not prompts:
            raise ValueError("No prompts given.")
        self.prompts = list(prompts)
        ids = [str(i) for i in (range(len(prompts)) if prompt_ids is None else prompt_ids)]
        if len(ids) != len(self.prompts):
            raise ValueError(f"Got {len(ids)} prompt ids for {len(self.prompts)} prompts.")
        duplicates = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
        if duplicates:
            raise ValueError(f"Prompt ids must be unique; repeated: {duplicates[:10]}.")
        self.prompt_ids = ids
        self._positions = {pid: i for i, pid in enumerate(ids)}
        self.prompt_hashes = [fingerprint(p) for p in self.prompts]
        self.output_dir = Path(output_dir)
        self.num_samples = num_samples
        self.show_progress = show_progress

    # ------------------------------------------------------------------------------------------------ helpers
    def keys(self) -> list[Key]:
        return [(pid, s) for pid in self.prompt_ids for s in range(self.num_samples)]

    def _generations(self, settings: dict[str, Any] | None = None) -> StageCache:
        """The generation cache; without `settings`, the one on disk (for the later stages), which must exist."""
        if settings is None:
            meta = self.output_dir / "generations.meta.json"
            if not meta.is_file():
                raise BestOfNCacheError(f"No generations in {self.output_dir}: run the `generate` stage first.")
            settings = json.loads(meta.read_text())
        cache = StageCache(self.output_dir, "generations", settings, ("prompt_sha", "completion")).open()
        self._check_generations(cache)
        return cache

    def _check_generations(self, cache: StageCache) -> None:
        positions = self._positions
        foreign = 0
        for (prompt_id, sample), row in cache.rows.items():
            if prompt_id not in positions:
                foreign += 1
                continue
            if row["prompt_sha"] != self.prompt_hashes[positions[prompt_id]]:
                raise BestOfNCacheError(
                    f"{cache.path}: prompt {prompt_id!r} was generated for a different prompt text than the one given "
                    "now (the prompts changed under the same ids). Use another output_dir or other prompt ids."
                )
            if not 0 <= sample < self.num_samples:
                raise BestOfNCacheError(
                    f"{cache.path}: prompt {prompt_id!r} has sample index {sample}, outside 0..{self.num_samples - 1}."
                )
        if foreign:
            logger.info(f"{cache.path}: {foreign} cached rows belong to prompts outside this run; left untouched.")

    def _completions_for(self, generations: StageCache, keys: Sequence[Key]) -> tuple[list[Text], list[Text]]:
        positions = self._positions
        prompts = [self.prompts[positions[pid]] for pid, _ in keys]
        completions = [as_completion(p, generations.rows[k]["completion"]) for p, k in zip(prompts, keys)]
        return prompts, completions

    def _require_complete(self, cache: StageCache, stage: str) -> None:
        missing = [k for k in self.keys() if k not in cache]
        if missing:
            raise BestOfNCacheError(
                f"{len(missing)} of {len(self.keys())} items have no {cache.name} yet ({_describe_items(missing)}); "
                f"run the `{stage}` stage first."
            )

    def _pending(self, cache: StageCache) -> list[Key]:
        return [k for k in self.keys() if k not in cache]

    def _progress(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="item", disable=not self.show_progress)

    @staticmethod
    def _check_stale(cache: StageCache, generations: StageCache) -> None:
        """Refuse rows scored for a completion that has since been regenerated."""
        for key, row in cache.rows.items():
            current = generations.rows.get(key)
            if current is not None and row["completion_sha"] != fingerprint(current["completion"]):
                raise BestOfNCacheError(
                    f"{cache.path}: the row for prompt {key[0]!r} sample {key[1]} belongs to another completion than "
                    f"the one in {generations.path}. Delete {cache.path.name} and {cache.meta_path.name} to recompute."
                )

    # ------------------------------------------------------------------------------------------------ generate
    def generate(
        self,
        model: "PreTrainedModel | str",
        tokenizer: PreTrainedTokenizerBase | None = None,
        settings: GenerationSettings | None = None,
        max_prompts: int | None = None,
        on_batch_end: Callable[[list[dict[str, Any]]], None] | None = None,
        model_init_kwargs: dict[str, Any] | None = None,
    ) -> int:
        """Generate the missing completions (all N for each prompt) and return how many were generated now.

        `model` is a causal LM or its path/Hub id (`model_init_kwargs` go to `from_pretrained`); `max_prompts` stops
        after that many of the prompts (the rest can be generated by a later call); `on_batch_end(rows)` is called
        after each batch is safely on disk.
        """
        settings = settings or GenerationSettings()
        name = model if isinstance(model, str) else _model_name(model)
        cache = self._generations({"num_samples": self.num_samples, "model": name, **settings.fingerprint()})
        prompt_limit = set(self.prompt_ids[: max_prompts if max_prompts is not None else len(self.prompt_ids)])
        pending = [k for k in self._pending(cache) if k[0] in prompt_limit]
        logger.info(f"generate: {len(cache.rows)} items cached, {len(pending)} to generate.")
        if not pending:
            return 0
        if settings.temperature == 0 and self.num_samples > 1:
            logger.warning("temperature=0 is greedy decoding: all N samples of a prompt will be identical.")
        backend = settings.resolved_backend()
        if backend == "vllm" and not isinstance(model, str):
            if settings.backend == "vllm":
                raise ValueError("The vLLM backend loads the policy itself: pass its path or Hub id, not a model.")
            backend = "transformers"
        if backend == "vllm":
            self._generate_with_vllm(name, cache, pending, settings, on_batch_end)
        else:
            self._generate_with_transformers(
                model, tokenizer, cache, pending, settings, on_batch_end, model_init_kwargs
            )
        return len(pending)

    def _generate_with_transformers(self, model, tokenizer, cache, pending, settings, on_batch_end, init_kwargs):
        if isinstance(model, str):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model, **(init_kwargs or {}))
            model.to("cuda" if torch.cuda.is_available() else "cpu")
        elif tokenizer is None:
            raise ValueError("Pass the policy's `tokenizer` along with a model object.")
        model.eval()
        positions = self._positions
        token_ids: dict[str, list[int]] = {}
        with self._progress(len(pending), "Generating") as progress:
            for batch in _chunks(pending, settings.batch_size):
                for pid, _ in batch:
                    if pid not in token_ids:
                        token_ids[pid] = _prompt_token_ids(tokenizer, self.prompts[positions[pid]])
                seed = derive_seed(settings.seed, *batch[0])
                outputs = generate_transformers(model, tokenizer, [token_ids[pid] for pid, _ in batch], settings, seed)
                self._store_generations(cache, batch, outputs, on_batch_end)
                progress.update(len(batch))

    def _generate_with_vllm(self, name, cache, pending, settings, on_batch_end):
        positions = self._positions
        by_prompt: dict[str, list[int]] = {}
        for pid, sample in pending:
            by_prompt.setdefault(pid, []).append(sample)
        tokenizer = _vllm_engine(name, settings.seed).get_tokenizer()
        prompt_ids = list(by_prompt)
        prompts_per_call = max(1, settings.batch_size // self.num_samples)
        with self._progress(len(pending), "Generating (vLLM)") as progress:
            for group in _chunks(prompt_ids, prompts_per_call):
                token_ids = [_prompt_token_ids(tokenizer, self.prompts[positions[pid]]) for pid in group]
                counts = [len(by_prompt[pid]) for pid in group]
                seeds = [derive_seed(settings.seed, pid, by_prompt[pid][0]) for pid in group]
                outputs = generate_vllm(name, token_ids, counts, settings, seeds)
                keys = [(pid, s) for pid in group for s in by_prompt[pid]]
                self._store_generations(cache, keys, [o for out in outputs for o in out], on_batch_end)
                progress.update(len(keys))

    def _store_generations(self, cache, keys, outputs: list[Generated], on_batch_end) -> None:
        positions = self._positions
        rows = [
            {
                "prompt_id": pid,
                "sample_index": sample,
                "prompt_sha": self.prompt_hashes[positions[pid]],
                "completion": out.text,
                "num_tokens": out.num_tokens,
                "finish_reason": out.finish_reason,
            }
            for (pid, sample), out in zip(keys, outputs)
        ]
        cache.append(rows)
        if on_batch_end is not None:
            on_batch_end(rows)

    # ------------------------------------------------------------------------------------------------ score
    def score(
        self,
        reward_model: "PreTrainedModel | str",
        tokenizer: PreTrainedTokenizerBase | None = None,
        batch_size: int = 16,
        max_length: int | None = None,
        chunk_size: int = 512,
    ) -> int:
        """Score the missing completions with the reward model (μ and, for a Gaussian RM, σ²), re-tokenizing with
        its own tokenizer and chat template; batched and length-sorted by `trl_anchor.rewards.scoring`. Results are written
        every `chunk_size` items. Returns how many were scored now."""
        _check_batch_size("batch_size", batch_size)
        _check_batch_size("chunk_size", chunk_size)
        if not isinstance(reward_model, str) and tokenizer is None:
            raise ValueError("Pass the reward model's own `tokenizer` along with a model object.")
        generations = self._generations()
        self._require_complete(generations, "generate")
        name = reward_model if isinstance(reward_model, str) else _model_name(reward_model)
        settings = {"reward_model": name, "max_length": max_length}
        cache = StageCache(self.output_dir, "scores", settings, ("completion_sha", "mean", "variance")).open()
        self._check_stale(cache, generations)
        pending = self._pending(cache)
        logger.info(f"score: {len(cache.rows)} items cached, {len(pending)} to score.")
        if not pending:
            return 0
        if isinstance(reward_model, str):  # loaded only now: a finished stage costs no model load
            reward_model, tokenizer = load_reward_model(reward_model)
        self._save_reward_config(reward_model)
        # Longest completions first over everything pending, not only within a chunk, so that each chunk's batches
        # hold similar lengths and pad little (rows are keyed, so the order they are written in does not matter).
        pending.sort(key=lambda key: len(generations.rows[key]["completion"]), reverse=True)
        with self._progress(len(pending), "Scoring") as progress:
            for chunk in _chunks(pending, chunk_size):
                prompts, completions = self._completions_for(generations, chunk)
                scores = score_responses(reward_model, tokenizer, completions, prompts, batch_size, max_length)
                variance = scores.variance if scores.variance is not None else [None] * len(chunk)
                cache.append([
                    {
                        "prompt_id": pid,
                        "sample_index": sample,
                        "completion_sha": fingerprint(generations.rows[(pid, sample)]["completion"]),
                        "mean": float(m),
                        "variance": None if v is None else float(v),
                    }
                    for (pid, sample), m, v in zip(chunk, scores.mean, variance)
                ])
                progress.update(len(chunk))
        return len(pending)

    def _save_reward_config(self, model: PreTrainedModel) -> None:
        # Kept beside the scores so `normalize` policies can use the statistics recorded in the reward model.
        record = {GAUSSIAN_CONFIG_KEY: gaussian_settings(model.config) if is_gaussian_config(model.config) else None}
        (self.output_dir / "reward_model_config.json").write_text(json.dumps(record, indent=2, default=str) + "\n")

    # ------------------------------------------------------------------------------------------------ evaluate
    def evaluate(
        self,
        gold_scorer: "str | GoldScorer",
        batch_size: int = 16,
        max_length: int | None = None,
        chunk_size: int = 256,
        name: str | None = None,
    ) -> int:
        """Score the missing completions with the gold scorer: a reward model path/Hub id, a
        `"package.module:function"` string, or a callable `(prompts, completions) -> list[float]` (prompts and
        completions in TRL's format: text, or message lists after conversational prompts). Results are written every
        `chunk_size` items; returns how many were scored now."""
        _check_batch_size("chunk_size", chunk_size)
        generations = self._generations()
        self._require_complete(generations, "generate")
        name = name or gold_scorer_name(gold_scorer)
        cache = StageCache(
            self.output_dir, "gold", {"gold_scorer": name, "max_length": max_length}, ("completion_sha", "gold")
        ).open()
        self._check_stale(cache, generations)
        pending = self._pending(cache)
        logger.info(f"evaluate: {len(cache.rows)} items cached, {len(pending)} to score with {name}.")
        if not pending:
            return 0
        scorer = load_gold_scorer(gold_scorer, batch_size, max_length)
        with self._progress(len(pending), "Gold scoring") as progress:
            for chunk in _chunks(pending, chunk_size):
                prompts, completions = self._completions_for(generations, chunk)
                scores = call_gold_scorer(scorer, prompts, completions, chunk, name)
                cache.append([
                    {
                        "prompt_id": pid,
                        "sample_index": sample,
                        "completion_sha": fingerprint(generations.rows[(pid, sample)]["completion"]),
                        "gold": score,
                    }
                    for (pid, sample), score in zip(chunk, scores)
                ])
                progress.update(len(chunk))
        return len(pending)

    # ------------------------------------------------------------------------------------------------ select
    def _stage_on_disk(self, name: str, required: Sequence[str]) -> StageCache | None:
        meta = self.output_dir / f"{name}.meta.json"
        if not meta.is_file():
            return None
        return StageCache(self.output_dir, name, json.loads(meta.read_text()), required).open()

    def pool(self) -> BestOfNPool:
        """The cached completions, scores and (when evaluated) gold rewards as `(num_prompts, N)` arrays."""
        generations = self._generations()
        self._require_complete(generations, "generate")
        scores = self._stage_on_disk("scores", ("completion_sha", "mean", "variance"))
        if scores is None:
            raise BestOfNCacheError(f"No scores in {self.output_dir}: run the `score` stage first.")
        self._require_complete(scores, "score")
        self._check_stale(scores, generations)
        gold = self._stage_on_disk("gold", ("completion_sha", "gold"))
        if gold is not None:
            self._check_stale(gold, generations)
            if any(k not in gold for k in self.keys()):
                logger.warning("The gold stage is incomplete; reporting the reward model's μ only. Run `evaluate`.")
                gold = None
        keys = self.keys()
        shape = (len(self.prompt_ids), self.num_samples)
        mean = np.array([scores.rows[k]["mean"] for k in keys], dtype=np.float64).reshape(shape)
        variances = [scores.rows[k]["variance"] for k in keys]
        std = None if any(v is None for v in variances) else np.sqrt(np.array(variances, np.float64)).reshape(shape)
        completions = [
            [generations.rows[(pid, s)]["completion"] for s in range(self.num_samples)] for pid in self.prompt_ids
        ]
        gold_values = None
        if gold is not None:
            gold_values = np.array([gold.rows[k]["gold"] for k in keys], np.float64).reshape(shape)
        return BestOfNPool(self.prompt_ids, self.prompts, completions, mean, std, gold_values, self._reward_config())

    def _reward_config(self) -> PretrainedConfig | None:
        path = self.output_dir / "reward_model_config.json"
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        return PretrainedConfig(**record) if record.get(GAUSSIAN_CONFIG_KEY) else None

    def select(self, policies: Sequence[str] = DEFAULT_POLICIES, seed: int = 0, plot: bool = True) -> BestOfNReport:
        """Pick the best of all N completions per prompt under each policy (`selections.jsonl`) and write the
        best-of-n curves for n = 1..N (`best_of_n.json`, `best_of_n.md` and, with `plot`, `best_of_n.png`)."""
        pool = self.pool()
        policies = check_policies(policies, gaussian=pool.std is not None)
        if pool.gold is not None and "oracle" not in policies:
            policies.append("oracle")
        selection = {p: policy_scores(p, pool.mean, pool.std, pool.gold, pool.reward_config, seed) for p in policies}
        self._write_selections(pool, selection)
        metrics = {"proxy": pool.mean} if pool.gold is None else {"gold": pool.gold, "proxy": pool.mean}
        report = best_of_n_report(
            selection, metrics, {"num_prompts": len(pool.prompt_ids), "num_samples": self.num_samples, "seed": seed}
        )
        self._write_report(report, plot)
        return report

    def _write_selections(self, pool: BestOfNPool, selection: dict[str, np.ndarray]) -> None:
        rows = []
        for policy, scores in selection.items():
            if policy == "random":
                continue  # a uniform draw has no single best item; its curve is the pool mean
            picks = scores.argmax(1)  # ties: the lowest sample index
            for row, pick in enumerate(picks):
                rows.append({
                    "prompt_id": pool.prompt_ids[row],
                    "policy": policy,
                    "sample_index": int(pick),
                    "completion": pool.completions[row][pick],
                    "selection_score": float(scores[row, pick]),
                    "mean": float(pool.mean[row, pick]),
                    "std": None if pool.std is None else float(pool.std[row, pick]),
                    "gold": None if pool.gold is None else float(pool.gold[row, pick]),
                })
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (self.output_dir / "selections.jsonl").write_text(text, encoding="utf-8")

    def _write_report(self, report: BestOfNReport, plot: bool) -> None:
        (self.output_dir / "best_of_n.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        sections = [f"# Best-of-n over {report.num_pools} prompts, N = {report.pool_size}\n"]
        if "gold" in report.curves:
            sections.append(report.to_markdown("gold", "Gold reward of the selected completion"))
        sections.append(report.to_markdown("proxy", "Reward-model μ of the selected completion (proxy)"))
        (self.output_dir / "best_of_n.md").write_text("\n".join(sections))
        if plot:
            panels = [("gold", "gold reward")] if "gold" in report.curves else []
            panels.append(("proxy", "reward model μ (proxy)"))
            plot_best_of_n(report, self.output_dir / "best_of_n.png", panels)
