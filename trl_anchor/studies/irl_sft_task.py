"""Verifiable IRL-SFT study: SFT vs IRFT vs RFT on a string task with exact answers and noisy demonstrations.

The task sorts a word's letters (`"dbca>"` → `"abcd"`), so every output is checked exactly. A tiny GPT-2 policy
(built from a config, character-level tokenizer built here with `tokenizers`, pad token = EOS token) is first
fine-tuned on the demonstrations for `warm_start_steps` (shared by every arm of a seed and noise level); then each arm
spends the same number of policy updates (`num_rounds × steps_per_round` steps of `batch_size` examples):

- `sft`: more supervised fine-tuning on the demonstrations (TRL's `SFTTrainer`);
- `irft`: `IRLSFTTrainer(mode="implicit")`, DPO on (demonstration ≻ own sample) with the previous round as reference;
- `rft`: `IRLSFTTrainer(mode="explicit")`, a Gaussian reward model on the same pairs, then best-of-N SFT;
- `irft_weighted` / `rft_weighted`: the same with variance-aware demonstration weighting (`demo_weighting="gaussian"`).

IRFT and RFT also spend compute on sampling and on the reward model; the report lists every arm's wall time.
A fraction `noise` of the training demonstrations (exactly `round(noise · n)`, seeded) is corrupted by one random edit
(adjacent swap, substitution, duplication or deletion) that always makes the answer wrong. Accuracy is the exact-match
rate of greedy decoding on held-out words that never occur in training.
"""

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset

ARMS = ("sft", "irft", "rft", "irft_weighted", "rft_weighted")
ARM_LABELS = {
    "sft": "SFT",
    "irft": "IRFT (implicit)",
    "rft": "RFT (explicit, best-of-N)",
    "irft_weighted": "IRFT + σ-weighting",
    "rft_weighted": "RFT + σ-weighting",
}
SEPARATOR = ">"


# ------------------------------------------------------------------------------------------------------------ task
def reference_answer(prompt: str) -> str:
    """The exact answer to a prompt: its letters in sorted order."""
    return "".join(sorted(prompt.removesuffix(SEPARATOR)))


def exact_match(predictions: list[str], prompts: list[str]) -> float:
    """Fraction of predictions equal to the exact answer of their prompt."""
    if len(predictions) != len(prompts):
        raise ValueError(f"Got {len(predictions)} predictions for {len(prompts)} prompts.")
    return float(np.mean([p == reference_answer(x) for p, x in zip(predictions, prompts, strict=True)]))


def corrupt(answer: str, alphabet: str, rng: np.random.Generator) -> str:
    """One random edit of `answer` that makes it wrong: swap two adjacent different letters, substitute a letter,
    duplicate one or delete one."""
    letters = list(answer)
    while True:
        kind = rng.integers(4)
        i = int(rng.integers(len(letters)))
        edited = list(letters)
        if kind == 0:
            swappable = [j for j in range(len(letters) - 1) if letters[j] != letters[j + 1]]
            if not swappable:
                continue
            j = swappable[int(rng.integers(len(swappable)))]
            edited[j], edited[j + 1] = edited[j + 1], edited[j]
        elif kind == 1:
            edited[i] = rng.choice([c for c in alphabet if c != letters[i]])
        elif kind == 2:
            edited.insert(i, letters[i])
        elif len(letters) > 1:
            del edited[i]
        else:
            continue
        return "".join(edited)


@dataclass
class TaskData:
    """Training demonstrations (`prompt`, `completion`, `corrupted`) and held-out test prompts."""

    train: Dataset
    test_prompts: list[str]


def make_task(
    num_train: int, num_test: int, noise: float, seed: int, alphabet: str = "abcdefghij", min_len: int = 4,
    max_len: int = 8,
) -> TaskData:
    """Distinct random words (train and test disjoint), demonstrations with exactly `round(noise · num_train)`
    corrupted answers."""
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"`noise` must lie in [0, 1), got {noise}.")
    rng = np.random.default_rng(seed)
    words: dict[str, None] = {}
    while len(words) < num_train + num_test:
        length = int(rng.integers(min_len, max_len + 1))
        words["".join(rng.choice(list(alphabet), length))] = None
    words = list(words)
    prompts = [w + SEPARATOR for w in words]
    train_prompts, test_prompts = prompts[:num_train], prompts[num_train:]
    corrupted = np.zeros(num_train, dtype=bool)
    corrupted[rng.permutation(num_train)[: int(round(noise * num_train))]] = True
    completions = [
        corrupt(reference_answer(p), alphabet, rng) if bad else reference_answer(p)
        for p, bad in zip(train_prompts, corrupted, strict=True)
    ]
    train = Dataset.from_dict({"prompt": train_prompts, "completion": completions, "corrupted": corrupted.tolist()})
    return TaskData(train=train, test_prompts=test_prompts)


def build_tokenizer(alphabet: str):
    """A character-level tokenizer (one token per letter and the separator) whose pad token is its EOS token."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0, **{c: i + 1 for i, c in enumerate(alphabet + SEPARATOR)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<eos>")


def build_policy(tokenizer, seed: int, n_layer: int = 2, n_embd: int = 64):
    """A randomly initialised tiny GPT-2 causal LM for the tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=n_layer, n_head=4, n_embd=n_embd, n_positions=32, vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def greedy_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 12, batch_size: int = 128) -> list[str]:
    """Greedy completions (decoded, EOS removed)."""
    import torch

    model.eval()
    tokenizer.padding_side = "left"
    answers = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True)
            out = model.generate(
                **batch, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return answers


# ----------------------------------------------------------------------------------------------------------- study
@dataclass
class IRLSFTStudyConfig:
    """Settings of `trl-anchor irl-sft-study` (every field is a flag; `--config study.yaml` works too)."""

    report_dir: str | None = field(
        default="reports/irl_sft", metadata={"help": "Where README.md, results.json and the figure go (None: none)."}
    )
    work_dir: str | None = field(
        default=None, metadata={"help": "Checkpoints of every run (default: a temporary folder, deleted after)."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds (data, init, training)."})
    noise_levels: list[float] = field(
        default_factory=lambda: [0.0, 0.2, 0.4], metadata={"help": "Fractions of corrupted demonstrations."}
    )
    arms: list[str] = field(default_factory=lambda: list(ARMS), metadata={"help": f"Arms to run, from {ARMS}."})
    weighted_noise_levels: list[float] = field(
        default_factory=lambda: [0.2, 0.4], metadata={"help": "Noise levels at which the *_weighted arms run."}
    )
    num_train: int = field(default=256, metadata={"help": "Training demonstrations."})
    num_test: int = field(default=300, metadata={"help": "Held-out test words."})
    alphabet: str = field(default="abcdefghij", metadata={"help": "Letters of the words."})
    warm_start_steps: int = field(default=300, metadata={"help": "SFT steps every arm starts from."})
    num_rounds: int = field(default=3, metadata={"help": "IRFT/RFT rounds."})
    steps_per_round: int = field(default=30, metadata={"help": "Policy updates per round (SFT: rounds × steps)."})
    batch_size: int = field(default=32, metadata={"help": "Examples (pairs for DPO) per policy update."})
    sft_learning_rate: float = field(default=3e-3, metadata={"help": "Learning rate of SFT and best-of-N SFT."})
    dpo_learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of the IRFT DPO steps."})
    beta: float = field(default=0.1, metadata={"help": "IRFT β."})
    sft_loss_weight: float = field(default=1.0, metadata={"help": "SFT loss mixed into IRFT's DPO loss."})
    num_samples_per_prompt: int = field(default=2, metadata={"help": "Samples per prompt and round."})
    reward_steps_per_round: int = field(default=30, metadata={"help": "Reward-model updates per round."})
    reward_learning_rate: float = field(default=1e-3, metadata={"help": "Reward-model learning rate."})
    reward_transform: str = field(default="mean", metadata={"help": "RFT best-of-N reward transform."})

    def __post_init__(self):
        unknown = sorted(set(self.arms) - set(ARMS))
        if unknown:
            raise ValueError(f"Unknown arms {unknown}; choose from {list(ARMS)}.")


def run_study(config: IRLSFTStudyConfig) -> dict:
    """Run every (noise, seed, arm) and write the report; returns the results."""
    from .irl_sft_report import summarize, write_report

    work = Path(config.work_dir) if config.work_dir else Path(tempfile.mkdtemp(prefix="irl_sft_study_"))
    started, load_before = time.perf_counter(), os.getloadavg()
    runs = []
    try:
        for noise in config.noise_levels:
            for seed in config.seeds:
                runs += _run_cell(config, noise, seed, work / f"noise{noise:g}-seed{seed}")
    finally:
        if config.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    results = {
        "config": asdict(config), "runs": runs, "summary": summarize(runs),
        "wall_seconds": time.perf_counter() - started,
        # Other jobs sharing the CPU stretch wall times; the 1/5/15-minute load averages record how much.
        "load_average": {"start": list(load_before), "end": list(os.getloadavg()), "cpus": os.cpu_count()},
    }
    if config.report_dir is not None:
        write_report(results, Path(config.report_dir))
    return results


def _run_cell(config: IRLSFTStudyConfig, noise: float, seed: int, work: Path) -> list[dict]:
    """Warm-start one policy, then run every arm from it; one result row per arm."""
    task = make_task(config.num_train, config.num_test, noise, seed, config.alphabet)
    tokenizer = build_tokenizer(config.alphabet)
    demos = task.train.select_columns(["prompt", "completion"])
    tic = time.perf_counter()
    warm = _sft(build_policy(tokenizer, seed), tokenizer, demos, config, config.warm_start_steps, seed, work / "warm")
    warm_seconds = time.perf_counter() - tic
    rows = [{"arm": "warm_start", "noise": noise, "seed": seed, "seconds": warm_seconds,
             "accuracy": _accuracy(warm, tokenizer, task)}]
    for arm in config.arms:
        if arm.endswith("_weighted") and noise not in config.weighted_noise_levels:
            continue
        tic = time.perf_counter()
        if arm == "sft":
            path, extra = _sft(warm, tokenizer, demos, config, config.num_rounds * config.steps_per_round, seed,
                               work / arm), {}
        else:
            path, extra = _irl_arm(arm, warm, tokenizer, demos, task, config, seed, work / arm)
        rows.append({"arm": arm, "noise": noise, "seed": seed, "seconds": time.perf_counter() - tic,
                     "accuracy": _accuracy(path, tokenizer, task), **extra})
    return rows


def _sft(model, tokenizer, demos, config, steps: int, seed: int, output_dir: Path) -> str:
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        str(output_dir), max_steps=steps, learning_rate=config.sft_learning_rate, lr_scheduler_type="constant",
        per_device_train_batch_size=config.batch_size, seed=seed, bf16=False, gradient_checkpointing=False,
        report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=max(steps, 1),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=demos, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(output_dir))
    return str(output_dir)


def _irl_arm(arm, warm: str, tokenizer, demos, task: TaskData, config, seed: int, output_dir: Path):
    from ..trainer import IRLSFTConfig, IRLSFTTrainer

    implicit = arm.startswith("irft")
    args = IRLSFTConfig(
        str(output_dir), mode="implicit" if implicit else "explicit", num_rounds=config.num_rounds,
        num_samples_per_prompt=config.num_samples_per_prompt, beta=config.beta,
        sft_loss_weight=config.sft_loss_weight if implicit else 0.0,
        learning_rate=config.dpo_learning_rate if implicit else config.sft_learning_rate,
        lr_scheduler_type="constant", max_steps=config.steps_per_round, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=128, reward_learning_rate=config.reward_learning_rate,
        reward_max_steps=config.reward_steps_per_round, reward_transform=config.reward_transform,
        demo_weighting="gaussian" if arm.endswith("_weighted") else "none", max_new_tokens=12,
        generation_batch_size=128, kl_num_prompts=32, seed=seed, bf16=False, gradient_checkpointing=False,
        report_to="none", disable_tqdm=True, logging_steps=config.steps_per_round,
    )
    trainer = IRLSFTTrainer(warm, args, demos, processing_class=tokenizer)
    history = trainer.train()
    extra = {"rounds": history}
    if arm.endswith("_weighted"):
        extra["weight_auc"] = _weight_auc(output_dir, task, config.num_rounds)
    return str(output_dir), extra


def _weight_auc(output_dir: Path, task: TaskData, num_rounds: int) -> list[float | None]:
    """Per round, the AUC of `1 − P(demo ≻ samples)` for telling corrupted demonstrations from clean ones: the
    fraction of (corrupted, clean) pairs where the corrupted one has the lower probability, ties counting half."""
    corrupted = np.asarray(task.train["corrupted"])
    aucs = []
    for round_index in range(1, num_rounds + 1):
        path = output_dir / f"round-{round_index}" / "demo_weights.json"
        if not path.is_file():
            aucs.append(None)
            continue
        prob = np.asarray(json.loads(path.read_text())["prob"], dtype=np.float64)
        valid = ~np.isnan(prob)
        bad, good = corrupted[valid], ~corrupted[valid]
        if not bad.any() or not good.any():
            aucs.append(None)
            continue
        p_bad, p_good = prob[valid][bad][:, None], prob[valid][good][None, :]
        aucs.append(float(np.mean((p_bad < p_good) + 0.5 * (p_bad == p_good))))
    return aucs


def _accuracy(path_or_model, tokenizer, task: TaskData) -> float:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path_or_model) if isinstance(path_or_model, str) else path_or_model
    return exact_match(greedy_answers(model, tokenizer, task.test_prompts), task.test_prompts)
