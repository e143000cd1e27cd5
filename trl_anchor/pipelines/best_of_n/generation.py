"""The `generate` stage of best-of-N: sampling settings, seeds that depend only on (seed, prompt id, sample index), and
batched generation with transformers (left-padded `model.generate`) or vLLM.

With transformers every sequence draws its tokens from its own random generator (Gumbel-max sampling,
`RowSeededSampler`), so a completion depends on its (seed, prompt id, sample index) and not on the batch size or on
which other sequences share its batch."""

import hashlib
import importlib.util
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ...rewards.scoring import Text


def check_positive(name: str, value: int) -> None:
    """Refuse a count or size below 1, naming the argument."""
    if value < 1:
        raise ValueError(f"`{name}` must be ≥ 1, got {value}.")


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
        seed (`int`, defaults to `0`): each sequence is sampled with its own generator seeded from (seed, prompt id,
            sample index), so a run is reproducible, independent of `batch_size`, and a resumed one draws new samples
            only for what is missing.
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
        check_positive("max_new_tokens", self.max_new_tokens)
        check_positive("batch_size", self.batch_size)
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


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, prompt: Text) -> list[int]:
    """Token ids of the text a policy continues."""
    # A rendered chat template already holds its special tokens (e.g. BOS); do not add them twice.
    return list(tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=isinstance(prompt, str))["input_ids"])


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    eos = tokenizer.eos_token_id if eos is None else eos
    return set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])


class RowSeededSampler(LogitsProcessor):
    """Sampling with one random generator per sequence (Gumbel-max): Gumbel noise drawn from the row's own generator
    is added to its (temperature / top-k / top-p warped) scores, and the argmax of the result is a draw from their
    softmax. A row's tokens therefore depend only on its seed and its own prefix, not on its batch."""

    def __init__(self, seeds: list[int]):
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        uniform = torch.stack(
            [torch.rand(scores.shape[-1], generator=g, dtype=torch.float64) for g in self.generators]
        ).clamp_(min=torch.finfo(torch.float64).tiny)
        gumbel = -torch.log(-torch.log(uniform))
        return scores.to(torch.float64) + gumbel.to(scores.device)


@torch.no_grad()
def generate_transformers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    settings: GenerationSettings,
    seeds: list[int],
) -> list[Generated]:
    """One batched, left-padded `model.generate` call; sequence `i` is sampled with its own generator seeded with
    `seeds[i]` (`RowSeededSampler`), without touching the caller's global RNG."""
    if len(seeds) != len(prompt_ids):
        raise ValueError(f"Got {len(seeds)} seeds for {len(prompt_ids)} sequences; one seed per sequence.")
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
    # Greedy decoding of the sampler's noisy scores is sampling; temperature 0 is plain greedy decoding.
    kwargs = dict(do_sample=False, max_new_tokens=settings.max_new_tokens, pad_token_id=pad_id)
    if settings.temperature > 0:
        warpers = [TemperatureLogitsWarper(settings.temperature)]
        warpers += [TopKLogitsWarper(settings.top_k)] if settings.top_k else []
        warpers += [TopPLogitsWarper(settings.top_p)] if settings.top_p < 1.0 else []
        kwargs["logits_processor"] = LogitsProcessorList([*warpers, RowSeededSampler(seeds)])
    output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **kwargs)
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

    llm = vllm_engine(model_name_or_path, settings.seed)
    params = [
        SamplingParams(
            n=n, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k or -1,  # -1: no top-k
            max_tokens=settings.max_new_tokens, seed=seed,
        )
        for n, seed in zip(num_samples, seeds, strict=True)
    ]
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
    return [
        [Generated(o.text, len(o.token_ids), "length" if o.finish_reason == "length" else "stop") for o in out.outputs]
        for out in outputs
    ]


_VLLM_ENGINES: dict[tuple[str, int], Any] = {}


def vllm_engine(model_name_or_path: str, seed: int):
    # Building a vLLM engine takes minutes; keep one per model for the life of the process.
    key = (model_name_or_path, seed)
    if key not in _VLLM_ENGINES:
        from vllm import LLM

        _VLLM_ENGINES[key] = LLM(model=model_name_or_path, seed=seed)
    return _VLLM_ENGINES[key]
