"""PersonalLLM (`namkoong-lab/PersonalLLM`): eight responses per prompt, each scored by ten public reward models.

The ten reward models act as ten annotators with systematically different tastes: for every pair of a prompt's
responses, each model votes for the response it scores higher (equal scores count ½), and the soft label is the share
of votes. All 28 pairs of a prompt are produced; a model missing a score abstains on the pairs involving it.
"""

import itertools
import os
from collections.abc import Sequence

import numpy as np
from datasets import Dataset

from ..metrics import spearman
from ._common import FilterReport, load_source, logger, pair_columns, require_columns

PERSONAL_LLM_ID = "namkoong-lab/PersonalLLM"
NUM_RESPONSES = 8
# Column suffixes of the ten reward models (e.g. `response_3_gemma_7b`).
REWARD_MODELS = (
    "gemma_2b",
    "gemma_7b",
    "mistral_raft",
    "llama3_sfairx",
    "oasst_deberta_v3",
    "beaver_7b",
    "oasst_pythia_7b",
    "oasst_pythia_1b",
    "mistral_ray",
    "mistral_weqweasdas",
)


def _scores(data: Dataset, reward_models: Sequence[str], negate: Sequence[str]) -> np.ndarray:
    """Scores as (prompts, responses, reward models); missing or non-finite scores become NaN (an abstention)."""
    scores = np.full((len(data), NUM_RESPONSES, len(reward_models)), np.nan)
    for k in range(NUM_RESPONSES):
        for m, model in enumerate(reward_models):
            values = np.array(
                [np.nan if v is None else v for v in data[f"response_{k + 1}_{model}"]], dtype=np.float64
            )
            scores[:, k, m] = -values if model in negate else values
    scores[~np.isfinite(scores)] = np.nan
    return scores


def scorer_agreement(scores: np.ndarray, reward_models: Sequence[str]) -> dict[str, float]:
    """Spearman correlation of each reward model's scores with the consensus of the others (the mean of their
    standardised scores), over every response all of them scored. A scorer that disagrees with the rest (ρ < 0) is
    most likely a cost model whose column has the opposite sign (`negate`)."""
    flat = scores.reshape(-1, scores.shape[-1])
    flat = flat[np.isfinite(flat).all(1)]
    if len(flat) < 3 or len(reward_models) < 2:
        return {}
    spread = flat.std(0)
    z = (flat - flat.mean(0)) / np.where(spread > 0, spread, 1.0)
    agreement = {}
    for m, model in enumerate(reward_models):
        others = np.delete(z, m, axis=1).mean(1)
        agreement[model] = spearman(flat[:, m], others)
    return agreement


def _pair_votes(scores: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sa, sb = scores[:, a, :], scores[:, b, :]
    both = np.isfinite(sa) & np.isfinite(sb)
    return ((sa > sb) & both).sum(1), ((sa < sb) & both).sum(1), ((sa == sb) & both).sum(1)


def load_personal_llm(
    source: "str | os.PathLike | Dataset" = PERSONAL_LLM_ID,
    *,
    split: str = "train",
    reward_models: Sequence[str] = REWARD_MODELS,
    negate: Sequence[str] = (),
    drop_ties: bool = True,
    conversational: bool = True,
    return_report: bool = False,
):
    """All response pairs of every PersonalLLM prompt, soft labels from the ten reward models' votes.

    Args:
        source: `"namkoong-lab/PersonalLLM"`, a local json/jsonl/parquet file with its schema, or a loaded `Dataset`.
        split: `"train"` or `"test"`.
        reward_models: which score columns vote (default: all ten).
        negate: reward models whose scores are costs (lower is better) and are flipped before voting. The published
            columns are used as they are by default, as PersonalLLM itself uses them, although `beaver_7b` is
            PKU-Alignment's *cost* model (`beaver-7b-v1.0-cost` in PersonalLLM's `constants.py`, scored as raw
            logits): each model's rank correlation with the consensus of the others is computed on the loaded data
            and a negative one is warned about and counted (`scorer_disagrees_with_the_others`), naming `negate`.
        drop_ties: drop (and count) pairs whose soft label is exactly 0.5.
        conversational: chat messages or plain text.
        return_report: also return the `FilterReport`.

    Returns:
        A `Dataset` with `prompt`, `chosen`, `rejected`, `soft_label`, `chosen_response_index`/
        `rejected_response_index` (1..8), `chosen_model`/`rejected_model` (the models that wrote the responses),
        `num_judgements`, `prompt_id`, `subset`.

    Example:

    ```python
    >>> pairs = load_personal_llm(split="test")  # doctest: +SKIP
    >>> len(pairs) <= 28 * 1000  # doctest: +SKIP
    True
    ```
    """
    unknown = sorted(set(reward_models) - set(REWARD_MODELS)) + sorted(set(negate) - set(reward_models))
    if unknown or not reward_models:
        raise ValueError(f"Unknown reward models {unknown}; choose among {REWARD_MODELS}.")
    data = load_source(source, split=split)
    responses = [f"response_{k + 1}" for k in range(NUM_RESPONSES)]
    score_columns = [f"{r}_{m}" for r in responses for m in reward_models]
    require_columns(data, ("prompt", *responses, *score_columns), "PersonalLLM")
    pairs = list(itertools.combinations(range(NUM_RESPONSES), 2))
    report = FilterReport(f"PersonalLLM ({split})", total=len(data) * len(pairs))
    scores = _scores(data, reward_models, negate)
    abstentions = int((~np.isfinite(scores)).sum())
    if abstentions:
        report.adjust("missing_scores_abstain", count=abstentions)
    for model, rho in scorer_agreement(scores, reward_models).items():
        if rho < 0:  # e.g. `beaver_7b`, PKU's cost model, if its published column is a cost on these data
            report.adjust("scorer_disagrees_with_the_others", f"{model} (Spearman ρ {rho:+.2f} with the others)")
            logger.warning(
                f"PersonalLLM: `{model}` ranks responses against the consensus of the other reward models (Spearman "
                f"ρ {rho:+.2f}); if its scores are costs, pass `negate=({model!r},)`."
            )
    n = len(data)
    rows = np.repeat(np.arange(n), len(pairs))

    def pick(column: Sequence) -> list:
        return [column[i] for i in rows]

    first = np.tile([a for a, _ in pairs], n)
    second = np.tile([b for _, b in pairs], n)
    texts = [data[r] for r in responses]
    votes = np.stack([np.stack(_pair_votes(scores, a, b), 1) for a, b in pairs], 1).reshape(-1, 3)
    has_models = all(f"{r}_model" in data.column_names for r in responses)
    models = [data[f"{r}_model"] for r in responses] if has_models else None
    metadata = {name: pick(data[name]) for name in ("prompt_id", "subset") if name in data.column_names}
    first_side = {"response_index": (first + 1).tolist()}
    second_side = {"response_index": (second + 1).tolist()}
    if models:
        first_side["model"] = [models[k][i] for k, i in zip(first, rows, strict=True)]
        second_side["model"] = [models[k][i] for k, i in zip(second, rows, strict=True)]
    columns = pair_columns(
        pick(data["prompt"]),
        [texts[k][i] for k, i in zip(first, rows, strict=True)],
        [texts[k][i] for k, i in zip(second, rows, strict=True)],
        (votes[:, 0], votes[:, 1], votes[:, 2]),
        report,
        ids=[f"prompt row {i} responses {a + 1}/{b + 1}" for i, a, b in zip(rows, first, second, strict=True)],
        drop_ties=drop_ties,
        conversational=conversational,
        first_side=first_side,
        second_side=second_side,
        metadata=metadata,
    )
    dataset = Dataset.from_dict(columns)
    return (dataset, report) if return_report else dataset
