"""Gold scorers of best-of-N: the reference reward the selected completions are judged by. A callable
`(prompts, completions) -> scores` (e.g. an LLM judge), a `"package.module:function"` that names one, or a reward model
whose μ is the gold reward; every answer is checked and errors name the prompts and samples involved."""

import importlib
import math
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
    model, tokenizer = load_reward_model(spec)

    def score_with_model(prompts: list[Text], completions: list[Text]) -> list[float]:
        return score_responses(model, tokenizer, completions, prompts, batch_size, max_length).mean.tolist()

    return score_with_model
