"""Gold scorers of best-of-N: the reference reward the selected completions are judged by. A callable
`(prompts, completions) -> scores` (e.g. an LLM judge), a `"package.module:function"` that names one, or a reward model
whose μ is the gold reward; every answer is checked and errors name the prompts and samples involved."""

import hashlib
import importlib
import inspect
import math
import types
from collections.abc import Callable, Sequence
from pathlib import Path

from ...models.loading import load_reward_model
from ...rewards.scoring import Text, score_responses
from .cache import Key, describe_keys

GoldScorer = Callable[[list[Text], list[Text]], Sequence[float]]


class GoldScorerError(RuntimeError):
    """The gold scorer failed or returned something unusable; the message names the prompts and samples involved."""


def call_gold_scorer(
    scorer: GoldScorer, prompts: list[Text], completions: list[Text], keys: Sequence[Key], name: str
) -> list[float]:
    """Call a `(prompts, completions) -> scores` gold scorer and check its answer, naming the prompts and samples of
    the batch in any error."""
    try:
        scores = scorer(prompts, completions)
    except Exception as error:
        raise GoldScorerError(
            f"Gold scorer {name} failed on a batch of {len(keys)} completions ({describe_keys(keys)}): "
            f"{type(error).__name__}: {error}"
        ) from error
    try:
        scores = [float(s) for s in scores]
    except (TypeError, ValueError) as error:
        raise GoldScorerError(
            f"Gold scorer {name} must return one number per completion; got {type(scores).__name__} for "
            f"{describe_keys(keys)} ({error})."
        ) from error
    if len(scores) != len(keys):
        raise GoldScorerError(
            f"Gold scorer {name} returned {len(scores)} scores for {len(keys)} completions ({describe_keys(keys)})."
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
    """The name a gold scorer is recorded under in the cache: the string given, or for a callable its
    `module:qualname` and a digest of what it computes (its code, its constants and the values it closes over), so
    that two lambdas, or two functions of one name, are never taken for each other. Closed-over values that have no
    stable description (e.g. a model object) enter by identity: such a scorer's cache is reused only within a process
    unless the caller names it (`name=`)."""
    if isinstance(spec, str):
        return spec
    owner = spec if inspect.isfunction(spec) or inspect.ismethod(spec) else type(spec)
    name = f"{owner.__module__}:{owner.__qualname__}"
    return f"{name}#{hashlib.sha256(_describe(spec).encode()).hexdigest()[:12]}"


def _describe(value, depth: int = 0) -> str:
    """A description of a value that is the same in every process for the same code and data."""
    if depth > 4:
        return "…"
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return repr(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(map(repr, value)) if isinstance(value, (set, frozenset)) else value
        return f"{type(value).__name__}[" + ",".join(_describe(v, depth + 1) for v in items) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_describe(k, depth + 1)}:{_describe(v, depth + 1)}" for k, v in value.items()) + "}"
    if isinstance(value, types.CodeType):
        consts = ",".join(_describe(c, depth + 1) for c in value.co_consts)
        return f"code({value.co_code.hex()}|{consts}|{value.co_names})"
    if inspect.ismethod(value):
        return f"method({_describe(value.__func__, depth + 1)}|{_describe(value.__self__, depth + 1)})"
    if inspect.isfunction(value):
        cells = [cell.cell_contents for cell in value.__closure__ or ()]
        return f"function({value.__qualname__}|{_describe(value.__code__, depth + 1)}|{_describe(cells, depth + 1)})"
    if callable(value) and hasattr(value, "__dict__"):  # a scorer object: its class's code and its state
        state = {k: v for k, v in vars(value).items() if not k.startswith("__")}
        return f"object({_describe(type(value).__call__, depth + 1)}|{_describe(state, depth + 1)})"
    return f"{type(value).__qualname__}@{id(value)}"


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
    model, tokenizer = load_reward_model(spec)

    def score_with_model(prompts: list[Text], completions: list[Text]) -> list[float]:
        return score_responses(model, tokenizer, completions, prompts, batch_size, max_length).mean.tolist()

    return score_with_model
