"""`IRLSFTTrainer`: reward learning from SFT demonstrations (Li et al., 2024, "Getting More Juice Out of the SFT Data:
Reward Learning from Human Demonstration Improves SFT for LLM Alignment", arXiv:2405.17888) on TRL's trainers.

The paper replaces maximum likelihood on demonstrations by maximum-likelihood inverse RL: learn a reward r(x, y; θ)
whose KL-regularised optimal policy `π_θ(y|x) ∝ π_ref(y|x)·exp(r(x, y; θ)/β)` makes the demonstrations likely. The
likelihood's gradient is `(1/β)·E[∇r(x, y_demo; θ) − ∇r(x, ỹ; θ)]` with ỹ drawn from the current policy, so each
round contrasts the demonstration with the policy's own samples. Two algorithms:

- Algorithm 1, RFT (`mode="explicit"`): (i) sample ỹ ~ π_t; (ii) reward update on (demonstration ≻ ỹ) pairs;
  (iii) policy update towards `π_{t+1} ∝ π_t·exp(r_{t+1}/β)` — here GRPO/RLOO with KL coefficient β to π_t, or
  best-of-N rejection-sampling SFT (the best-of-N distribution approximates that tilted policy).
- Algorithm 2, IRFT (`mode="implicit"`): the reward is implicit, `r(x, y) = β·log π_θ(y|x)/π_t(y|x)`, so the reward
  update *is* the policy update: minimise `−log σ(β·[log π_θ(y_demo|x)/π_t(y_demo|x) − log π_θ(ỹ|x)/π_t(ỹ|x)])`
  (the DPO/SPIN loss with the demonstration as chosen, the sample as rejected and the previous round's policy π_t as
  reference), run with TRL's `DPOTrainer`. SPIN is the special case of one generation per epoch; the authors'
  stage-wise runs regenerate every 1/T of the data (`split_prompts_across_rounds=True`).

The formulas each step implements are written out above and in the step docstrings (`irl_sft_steps`,
`irl_sft_reward`) rather than cited by equation number.
"""

import gc
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging
from trl.data_utils import is_conversational

from ..rewards.transforms import RewardTransform
from . import irl_sft_steps as steps
from .irl_sft_config import IRLSFTConfig
from .irl_sft_data import (
    as_completion,
    build_pairs,
    demonstration_weights,
    prepare_demonstrations,
    round_prompt_indices,
)
from .irl_sft_generation import completion_log_probs, generate_samples, generate_samples_vllm, vllm_available
from .irl_sft_reward import PairScores, best_of_n, load_reward_model, reward_dataset, score_pairs, train_reward_model

logger = logging.get_logger(__name__)

STATE_FILE = "irl_sft_state.json"


class IRLSFTTrainer:
    """
    Reward learning from SFT demonstrations: IRFT (`mode="implicit"`) and RFT (`mode="explicit"`) as a round loop
    over TRL trainers.

    Each round t: sample `num_samples_per_prompt` completions per prompt from the current policy π_t, pair every
    sample that differs from its demonstration as (demonstration ≻ sample), then
    - implicit: `DPOTrainer` on the pairs with π_t as reference (optionally + `sft_loss_weight` × SFT);
    - explicit: `AnchorGaussianRewardTrainer` on the pairs (continuing from the previous round's reward model), then
      best-of-N SFT, GRPO or RLOO against the reward model through a `RewardTransform`.
    The policy after round t is saved to `output_dir/round-{t}/policy` with the round's metrics in
    `output_dir/irl_sft_state.json`, so `train(resume_from_checkpoint=True)` continues after the last finished
    round; the final policy and tokenizer are also saved to `output_dir`.

    Metrics of every round (in `self.history` and the state file): `num_pairs`, `num_identical` (samples equal to
    their demonstration), `reward_margin` (mean reward of the demonstration minus the sample's on the round's pairs:
    the implicit reward `β·Δ log-ratio` of the new policy, or the explicit reward model's; `reward_margin_before` is
    the same before the round's update), `logp_margin_before`/`logp_margin_after` (mean `log π(demo) − log π(sample)`),
    `kl_to_start` (Monte-Carlo `KL(π_{t+1} ‖ π_0)`), `demo_weight_*` and timings.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from trl_anchor import IRLSFTConfig, IRLSFTTrainer

    >>> demonstrations = Dataset.from_dict({"prompt": ["2+2=", "3+4="], "completion": ["4", "7"]})
    >>> trainer = IRLSFTTrainer(
    ...     model="Qwen/Qwen2.5-0.5B-Instruct",
    ...     args=IRLSFTConfig("qwen-irft", mode="implicit", num_rounds=2, beta=0.1, max_new_tokens=16),
    ...     train_dataset=demonstrations,
    ... )
    >>> trainer.train()
    ```

    Args:
        model (`str` or [`~transformers.PreTrainedModel`]): the initial policy, a causal LM (path, Hub id or
            instance; an instance is saved to `output_dir/round-0/policy` first).
        args ([`IRLSFTConfig`]): the configuration.
        train_dataset ([`~datasets.Dataset`]): demonstrations, `prompt` + `completion` (standard or conversational)
            or `messages`.
        processing_class ([`~transformers.PreTrainedTokenizerBase`], *optional*): the policy's tokenizer; loaded
            from `model` when omitted. The reward model shares it.
    """

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: IRLSFTConfig,
        train_dataset: Dataset,
        processing_class: PreTrainedTokenizerBase | None = None,
    ):
        if not isinstance(args, IRLSFTConfig):
            raise ValueError(f"`args` must be an IRLSFTConfig, got {type(args).__name__}.")
        if _zero3_enabled():
            raise ValueError(
                "IRL-SFT samples and scores with whole models on the main process between rounds, which DeepSpeed "
                "ZeRO-3 (partitioned weights) does not allow; use ZeRO-2 (recipes/accelerate_configs/zero2.yaml) "
                "or DDP."
            )
        if args.use_vllm and importlib.util.find_spec("vllm") is None:
            raise ValueError("`use_vllm=True` needs vLLM (`pip install vllm`); set it to false or leave it unset.")
        self.args = args
        self.output_dir = Path(args.output_dir)
        self.demonstrations = prepare_demonstrations(train_dataset)
        self._state = PartialState()
        if isinstance(model, str):
            self.initial_policy = model
        else:
            self.initial_policy = str(self.output_dir / "round-0" / "policy")
            if self._state.is_main_process:
                model.save_pretrained(self.initial_policy)
        if processing_class is None:
            processing_class = AutoTokenizer.from_pretrained(self.initial_policy)
        if processing_class.pad_token is None:
            processing_class.pad_token = processing_class.eos_token
        self.processing_class = processing_class
        if self._state.is_main_process and not isinstance(model, str):
            processing_class.save_pretrained(self.initial_policy)
        self._state.wait_for_everyone()
        self.transform = RewardTransform.parse(args.reward_transform)
        self.history: list[dict] = []
        self.policy_path = self.initial_policy
        self.reward_model_path = args.reward_model_name_or_path or self.initial_policy

    # ----------------------------------------------------------------------------------------------------- loop
    def train(self, resume_from_checkpoint: bool = False) -> list[dict]:
        """Run the remaining rounds; returns the metrics of every round (also in `self.history`)."""
        start = self._resume() if resume_from_checkpoint else 0
        for round_index in range(start, self.args.num_rounds):
            metrics = self._run_round(round_index)
            self.history.append(metrics)
            self._save_state()
            logger.info(f"IRL-SFT round {round_index + 1}/{self.args.num_rounds}: {metrics}")
        self._save_final_policy()
        return self.history

    def _run_round(self, round_index: int) -> dict:
        args = self.args
        round_dir = self.output_dir / f"round-{round_index + 1}"
        indices = round_prompt_indices(
            len(self.demonstrations), args.num_rounds, round_index, args.split_prompts_across_rounds
        )
        demos = self.demonstrations.select(indices)
        metrics = {"round": round_index + 1, "num_prompts": len(demos)}
        tic = time.perf_counter()
        samples = self._shared(round_dir / "samples.json", lambda: self._generate(demos, args.seed + round_index))
        round_pairs = build_pairs(demos, samples)
        metrics.update(
            num_samples=round_pairs.num_samples, num_identical=round_pairs.num_identical,
            num_pairs=round_pairs.num_pairs, generation_seconds=time.perf_counter() - tic,
        )
        if round_pairs.num_pairs == 0:
            logger.warning(f"Round {round_index + 1}: every sample reproduces its demonstration; no pair to train on.")
            metrics["kl_to_start"] = self._kl_to_start(round_index)
            return metrics

        weights, reward_model = None, None
        if args.mode == "explicit" or args.demo_weighting == "gaussian":
            tic = time.perf_counter()
            reward_model, reward_metrics, weights = self._reward_step(demos, round_pairs, round_dir)
            metrics.update(reward_metrics, reward_seconds=time.perf_counter() - tic)

        tic = time.perf_counter()
        logp_before = self._main_only(lambda: self._logp_margin(self.policy_path, round_pairs.pairs))
        if args.mode == "implicit":
            new_policy = steps.dpo_step(self, round_pairs, weights, round_dir)
        elif args.policy_improvement == "best_of_n":
            selection = self._shared(
                round_dir / "best_of_n.json",
                lambda: best_of_n(
                    reward_model, self.processing_class, demos, samples, self.transform.bind(reward_model),
                    args.best_of_n_include_demonstration, args.per_device_eval_batch_size,
                ),
            )
            winners, demo_won = selection[0], np.asarray(selection[1], dtype=bool)
            metrics["best_of_n_demo_rate"] = float(demo_won.mean())
            new_policy = steps.best_of_n_sft_step(self, demos, winners, demo_won, weights, round_dir)
        else:
            new_policy = steps.online_rl_step(self, demos, reward_model, round_dir)
        metrics["policy_seconds"] = time.perf_counter() - tic
        _release(reward_model)
        logp_after = self._main_only(lambda: self._logp_margin(new_policy, round_pairs.pairs))
        metrics.update(logp_margin_before=logp_before, logp_margin_after=logp_after)
        if args.mode == "implicit" and logp_after is not None:
            # Implicit reward of the new policy: β·[log π_{t+1}/π_t (demo) − log π_{t+1}/π_t (sample)], averaged.
            metrics.update(reward_margin_before=0.0, reward_margin=args.beta * (logp_after - logp_before))
        self.policy_path = new_policy
        metrics["kl_to_start"] = self._kl_to_start(round_index)
        return metrics

    # ---------------------------------------------------------------------------------------------- round steps
    def _generate(self, demos: Dataset, seed: int) -> list[list[str]]:
        args = self.args
        use_vllm = vllm_available() if args.use_vllm is None else args.use_vllm
        kwargs = dict(
            num_samples=args.num_samples_per_prompt, max_new_tokens=args.max_new_tokens,
            temperature=args.temperature, top_p=args.top_p, seed=seed,
        )
        if use_vllm:
            return generate_samples_vllm(
                self.policy_path, self.processing_class, demos["prompt"],
                gpu_memory_utilization=args.vllm_gpu_memory_utilization, **kwargs,
            )
        policy = self._load_policy(self.policy_path)
        samples = generate_samples(
            policy, self.processing_class, demos["prompt"], batch_size=args.generation_batch_size, **kwargs
        )
        _release(policy)
        return samples

    def _reward_step(self, demos: Dataset, round_pairs, round_dir: Path):
        """Train the round's reward model; returns it, the reward metrics (main process) and the demonstration
        weights (every process; `None` without `demo_weighting`)."""
        args = self.args
        batch = args.per_device_eval_batch_size

        def scores_before() -> PairScores:
            model = load_reward_model(self.reward_model_path, args.reward_type).to(self._state.device)
            scores = score_pairs(model, self.processing_class, demos, round_pairs, batch)
            _release(model)
            return scores

        before = self._main_only(scores_before)
        top_class = len(args.anchor_thresholds) if args.anchor_demonstrations else None
        config = steps.reward_config(args, str(round_dir / "reward_model"))
        model = train_reward_model(
            self.reward_model_path, self.processing_class, reward_dataset(demos, round_pairs, top_class), config
        )
        self.reward_model_path = config.output_dir
        after = self._main_only(lambda: score_pairs(model.to(self._state.device), self.processing_class, demos,
                                                    round_pairs, batch))
        metrics = {}
        if after is not None:
            metrics = {
                "reward_margin_before": before.margin, "reward_margin": after.margin,
                "reward_accuracy": after.accuracy,
            }
            if after.demo_std is not None:
                metrics.update(demo_sigma=float(after.demo_std.mean()), sample_sigma=float(after.sample_std.mean()))
        weights = None
        if args.demo_weighting == "gaussian":

            def compute_weights():
                prob, w = demonstration_weights(
                    after.demo_mean, after.demo_std, after.sample_mean, after.sample_std, after.demo_index
                )
                return {"prob": prob.tolist(), "weights": w.tolist()}

            shared = self._shared(round_dir / "demo_weights.json", compute_weights)
            weights = np.asarray(shared["weights"], dtype=np.float64)
            if after is not None:
                metrics.update(steps.weight_metrics(np.asarray(shared["prob"], dtype=np.float64), weights))
        return model, metrics, weights

    def _logp_margin(self, policy_path: str, pairs: Dataset) -> float:
        """Mean `log π(demo|x) − log π(sample|x)` over the round's pairs under the policy at `policy_path`."""
        policy = self._load_policy(policy_path)
        batch = self.args.per_device_eval_batch_size
        chosen = completion_log_probs(policy, self.processing_class, pairs["prompt"], pairs["chosen"], batch)
        rejected = completion_log_probs(policy, self.processing_class, pairs["prompt"], pairs["rejected"], batch)
        _release(policy)
        return float(np.mean(chosen - rejected))

    def _kl_to_start(self, round_index: int) -> float | None:
        """Monte-Carlo `KL(π ‖ π_0) = E_{y~π}[log π(y|x) − log π_0(y|x)]` on a seeded subset of the prompts."""
        count = min(self.args.kl_num_prompts, len(self.demonstrations))
        if count == 0:
            return None
        args = self.args

        def estimate() -> float:
            rows = np.random.default_rng(args.seed).choice(len(self.demonstrations), count, replace=False)
            prompts = self.demonstrations.select(np.sort(rows))["prompt"]
            policy = self._load_policy(self.policy_path)
            # Temperature 1 and no top-p: the draws come from π itself, so the average is an unbiased estimate.
            draws = generate_samples(
                policy, self.processing_class, prompts, 1, args.max_new_tokens, 1.0, 1.0,
                args.generation_batch_size, seed=args.seed + 10_000 + round_index,
            )
            conversational = is_conversational({"prompt": prompts[0]})
            completions = [as_completion(draw[0], conversational) for draw in draws]
            batch = args.per_device_eval_batch_size
            log_p = completion_log_probs(policy, self.processing_class, prompts, completions, batch)
            _release(policy)
            start = self._load_policy(self.initial_policy)
            log_p0 = completion_log_probs(start, self.processing_class, prompts, completions, batch)
            _release(start)
            return float(np.mean(log_p - log_p0))

        return self._main_only(estimate)

    # ------------------------------------------------------------------------------------------------ utilities
    def _load_policy(self, path: str):
        kwargs = dict(self.args.model_init_kwargs or {})
        policy = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        return policy.to(self._state.device)

    def _main_only(self, compute):
        """`compute()` on the main process (metrics); `None` on the others."""
        return compute() if self._state.is_main_process else None

    def _shared(self, path: Path, compute):
        """`compute()` on the main process, written to the JSON file `path` (kept for inspection) and read back by
        every process, so all ranks train on the same generated data."""
        if self._state.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(compute(), default=_to_json))
        self._state.wait_for_everyone()
        return json.loads(path.read_text())

    def _save_state(self) -> None:
        if not self._state.is_main_process:
            return
        state = {
            "mode": self.args.mode,
            "num_rounds": self.args.num_rounds,
            "initial_policy": self.initial_policy,
            "policy_path": self.policy_path,
            "reward_model_path": self.reward_model_path,
            "history": self.history,
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / STATE_FILE).write_text(json.dumps(state, indent=1))

    def _resume(self) -> int:
        path = self.output_dir / STATE_FILE
        if not path.is_file():
            raise ValueError(f"Cannot resume: {path} does not exist (no finished round in `output_dir`).")
        state = json.loads(path.read_text())
        if state["mode"] != self.args.mode:
            raise ValueError(f"Cannot resume a mode={state['mode']!r} run with mode={self.args.mode!r}.")
        self.history = state["history"]
        self.policy_path, self.reward_model_path = state["policy_path"], state["reward_model_path"]
        logger.info(f"Resuming after round {len(self.history)} from {self.policy_path}.")
        return len(self.history)

    def _save_final_policy(self) -> None:
        if self._state.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if Path(self.policy_path).is_dir():
                for item in Path(self.policy_path).iterdir():
                    if item.is_file():
                        shutil.copy2(item, self.output_dir / item.name)
            else:  # no round trained (no pairs): the initial policy is a Hub id
                self._load_policy(self.policy_path).save_pretrained(self.output_dir)
                self.processing_class.save_pretrained(self.output_dir)
        self._state.wait_for_everyone()


def _zero3_enabled() -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    # `accelerate launch` with a ZeRO-3 config announces it in the environment before any Trainer exists.
    return is_deepspeed_zero3_enabled() or os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"


def _release(model) -> None:
    """Free a model the loop loaded (the caller drops its own reference) before the next one is loaded."""
    if model is None:
        return
    model.to("cpu")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _to_json(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    raise TypeError(f"Cannot write {type(value).__name__} to JSON.")
