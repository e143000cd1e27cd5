"""`BestOfNPipeline`: resumable best-of-N over a fixed set of prompts. Its stages `generate → score → evaluate →
select` each append to a cache in `output_dir` (see `trl_anchor.pipelines.best_of_n`) and recompute nothing that
finished."""

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging
from trl.data_utils import is_conversational

from ...models.configuration_gaussian import GAUSSIAN_CONFIG_KEY, gaussian_settings, is_gaussian_config
from ...models.loading import load_reward_model, weights_fingerprint
from ...rewards.scoring import Text, combined_scores, model_attribute_weights, score_responses
from .cache import BestOfNCacheError, Key, StageCache, describe_keys, fingerprint
from .generation import (
    Generated,
    GenerationSettings,
    check_positive,
    derive_seed,
    generate_transformers,
    generate_vllm,
    prompt_token_ids,
    vllm_engine,
)
from .gold import GoldScorer, call_gold_scorer, gold_scorer_name, load_gold_scorer
from .report import BestOfNReport, best_of_n_report, plot_best_of_n
from .selection import DEFAULT_POLICIES, check_policies, policy_scores

logger = logging.get_logger(__name__)

STAGES = ("generate", "score", "evaluate", "select")


def _model_name(model: PreTrainedModel) -> str:
    return model.name_or_path or type(model).__name__


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def as_completion(prompt: Text, completion: str) -> Text:
    """A generated completion in the prompt's format: an assistant message after a conversational prompt."""
    return [{"role": "assistant", "content": completion}] if is_conversational({"prompt": prompt}) else completion


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
        check_positive("num_samples", num_samples)
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
        completions = [as_completion(p, generations.rows[k]["completion"]) for p, k in zip(prompts, keys, strict=True)]
        return prompts, completions

    def _require_complete(self, cache: StageCache, stage: str) -> None:
        missing = [k for k in self.keys() if k not in cache]
        if missing:
            raise BestOfNCacheError(
                f"{len(missing)} of {len(self.keys())} items have no {cache.name} yet ({describe_keys(missing)}); "
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
                        token_ids[pid] = prompt_token_ids(tokenizer, self.prompts[positions[pid]])
                seeds = [derive_seed(settings.seed, *key) for key in batch]  # per sequence, whatever the batch
                prompt_ids = [token_ids[pid] for pid, _ in batch]
                outputs = generate_transformers(model, tokenizer, prompt_ids, settings, seeds)
                self._store_generations(cache, batch, outputs, on_batch_end)
                progress.update(len(batch))

    def _generate_with_vllm(self, name, cache, pending, settings, on_batch_end):
        positions = self._positions
        by_prompt: dict[str, list[int]] = {}
        for pid, sample in pending:
            by_prompt.setdefault(pid, []).append(sample)
        tokenizer = vllm_engine(name, settings.seed).get_tokenizer()
        prompt_ids = list(by_prompt)
        prompts_per_call = max(1, settings.batch_size // self.num_samples)
        with self._progress(len(pending), "Generating (vLLM)") as progress:
            for group in _chunks(prompt_ids, prompts_per_call):
                token_ids = [prompt_token_ids(tokenizer, self.prompts[positions[pid]]) for pid in group]
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
            for (pid, sample), out in zip(keys, outputs, strict=True)
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
        its own tokenizer and chat template; batched and length-sorted by `trl_anchor.rewards.scoring`. Results are
        written every `chunk_size` items. Returns how many were scored now."""
        check_positive("batch_size", batch_size)
        check_positive("chunk_size", chunk_size)
        if not isinstance(reward_model, str) and tokenizer is None:
            raise ValueError("Pass the reward model's own `tokenizer` along with a model object.")
        generations = self._generations()
        self._require_complete(generations, "generate")
        name = reward_model if isinstance(reward_model, str) else _model_name(reward_model)
        # A model retrained in place keeps its path: the weights' fingerprint tells its cached scores apart.
        weights = weights_fingerprint(reward_model)
        settings = {"reward_model": name, "reward_weights": weights, "max_length": max_length}
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
                if scores.attributes is not None:  # a multi-attribute model: its default combination of them
                    scores = combined_scores(scores, model_attribute_weights(reward_model))
                variance = scores.variance if scores.variance is not None else [None] * len(chunk)
                cache.append([
                    {
                        "prompt_id": pid,
                        "sample_index": sample,
                        "completion_sha": fingerprint(generations.rows[(pid, sample)]["completion"]),
                        "mean": float(m),
                        "variance": None if v is None else float(v),
                    }
                    for (pid, sample), m, v in zip(chunk, scores.mean, variance, strict=True)
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
        check_positive("chunk_size", chunk_size)
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
                    for (pid, sample), score in zip(chunk, scores, strict=True)
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
