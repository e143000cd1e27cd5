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

Modules: `estimator` (the exact best-of-n curves), `selection` (policies), `cache` (stage caches), `generation`
(transformers / vLLM sampling), `gold` (gold scorers), `report` (curves, tables, figure) and `pipeline`
(`BestOfNPipeline`, which runs the stages).
"""

from ...models.loading import load_reward_model
from .cache import BestOfNCacheError, Key, StageCache, fingerprint
from .estimator import best_of_n_curve, best_of_n_expectation, best_of_n_weights
from .generation import Generated, GenerationSettings, derive_seed, generate_transformers, generate_vllm, render_prompt
from .gold import GoldScorer, GoldScorerError, call_gold_scorer, gold_scorer_name, load_gold_scorer
from .pipeline import STAGES, BestOfNPipeline, BestOfNPool, as_completion
from .report import BestOfNCurve, BestOfNReport, best_of_n_report, log_grid, plot_best_of_n
from .selection import ANCHOR_POLICIES, DEFAULT_POLICIES, REFERENCE_POLICIES, check_policies, policy_scores

__all__ = [
    "ANCHOR_POLICIES",
    "DEFAULT_POLICIES",
    "REFERENCE_POLICIES",
    "STAGES",
    "BestOfNCacheError",
    "BestOfNCurve",
    "BestOfNPipeline",
    "BestOfNPool",
    "BestOfNReport",
    "Generated",
    "GenerationSettings",
    "GoldScorer",
    "GoldScorerError",
    "Key",
    "StageCache",
    "as_completion",
    "best_of_n_curve",
    "best_of_n_expectation",
    "best_of_n_report",
    "best_of_n_weights",
    "call_gold_scorer",
    "check_policies",
    "derive_seed",
    "fingerprint",
    "generate_transformers",
    "generate_vllm",
    "gold_scorer_name",
    "load_gold_scorer",
    "load_reward_model",
    "log_grid",
    "plot_best_of_n",
    "policy_scores",
    "render_prompt",
]
