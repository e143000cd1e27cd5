"""Sampling from the policy and scoring its log-probabilities, for `IRLSFTTrainer`.

Samples come from transformers `generate` (batched, left padding) or, when installed and a CUDA device is present,
from vLLM. Prompts are tokenised the way TRL's trainers tokenise them: conversational prompts through the tokenizer's
chat template with the generation prompt, text prompts as they are; `completion_log_probs` scores a completion on the
tokens `trl.DPOTrainer` trains on (the EOS token appended to text completions).
"""

import importlib.util

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl.data_utils import is_conversational


def _prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt) -> list[int]:
    if is_conversational({"prompt": prompt}):
        return list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ])
    return list(tokenizer(text=prompt)["input_ids"])


def _full_ids(tokenizer: PreTrainedTokenizerBase, prompt, completion) -> list[int]:
    if is_conversational({"prompt": prompt}):
        return list(tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"])
    if tokenizer.eos_token and not completion.endswith(tokenizer.eos_token):
        completion = completion + tokenizer.eos_token
    return list(tokenizer(text=prompt + completion)["input_ids"])


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


@torch.no_grad()
def generate_samples(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list,
    num_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
) -> list[list[str]]:
    """`num_samples` sampled completions (decoded text, special tokens removed) per prompt with `model.generate`."""
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_token_id is None:
        raise ValueError(f"The tokenizer {type(tokenizer).__name__} has neither a pad nor an EOS token to pad with.")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # reproducible samples without disturbing the caller's random stream afterwards
    outputs: list[list[str]] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = [_prompt_ids(tokenizer, prompt) for prompt in prompts[start : start + batch_size]]
            width = max(len(ids) for ids in batch)
            # Left padding: every prompt ends at the last column, where generation continues.
            input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention_mask[row, width - len(ids) :] = 1
            generated = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=0,  # pure temperature/top-p sampling; transformers defaults to top-k 50
                max_new_tokens=max_new_tokens,
                num_return_sequences=num_samples,
                pad_token_id=pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
            outputs += [texts[i : i + num_samples] for i in range(0, len(texts), num_samples)]
    finally:
        torch.random.set_rng_state(generator_state)
        model.train(was_training)
    return outputs


def generate_samples_vllm(
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list,
    num_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    gpu_memory_utilization: float = 0.4,
) -> list[list[str]]:
    """The same samples as `generate_samples`, from a vLLM engine on the saved policy (released afterwards)."""
    from vllm import LLM, SamplingParams

    engine = LLM(model=model_path, gpu_memory_utilization=gpu_memory_utilization, seed=seed)
    params = SamplingParams(
        n=num_samples, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed,
        skip_special_tokens=True,
    )
    requests = [{"prompt_token_ids": _prompt_ids(tokenizer, prompt)} for prompt in prompts]
    results = engine.generate(requests, params, use_tqdm=False)
    samples = [[completion.text for completion in result.outputs] for result in results]
    del engine
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return samples


@torch.no_grad()
def completion_log_probs(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list, completions: list, batch_size: int = 32
) -> np.ndarray:
    """`log π(completion | prompt)`: the sum of the completion tokens' log-probabilities, EOS included.

    The completion starts where the tokenised prompt and prompt + completion first differ, as in `trl.DPOTrainer`.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"Got {len(prompts)} prompts for {len(completions)} completions.")
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sequences, starts = [], []
    for prompt, completion in zip(prompts, completions, strict=True):
        prompt_ids, full_ids = _prompt_ids(tokenizer, prompt), _full_ids(tokenizer, prompt, completion)
        shared = min(len(prompt_ids), len(full_ids))
        start = next((i for i in range(shared) if prompt_ids[i] != full_ids[i]), shared)
        sequences.append(full_ids)
        starts.append(max(start, 1))  # the first token of a sequence has no prediction
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    result = np.empty(len(sequences), dtype=np.float64)
    for begin in range(0, len(sequences), batch_size):
        batch = sequences[begin : begin + batch_size]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits.float()
        token_log_probs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None].to(device))
        token_log_probs = token_log_probs.squeeze(-1).cpu()
        for row, ids in enumerate(batch):
            start = starts[begin + row]
            result[begin + row] = token_log_probs[row, start - 1 : len(ids) - 1].double().sum().item()
    model.train(was_training)
    return result
