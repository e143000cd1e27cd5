"""Batched scoring of (prompt, response) pairs with any sequence-classification reward model.

One implementation serves anchor labelling, evaluation, best-of-N and the RL reward functions. Inputs are built
exactly as `trl.RewardTrainer` builds its training inputs: conversational examples go through the reward model's own
chat template, plain text is `prompt + response` with the EOS token appended, so a model is scored on the same
token sequences it was trained on.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging
from trl.data_utils import is_conversational

from ..models.modeling_gaussian import GaussianRewardModel

logger = logging.get_logger(__name__)

Text = str | list[dict[str, Any]]


@dataclass
class RewardScores:
    """Scores of a list of responses, in input order. `variance` is `None` for a non-Gaussian (BT) reward model."""

    mean: np.ndarray
    variance: np.ndarray | None

    @property
    def std(self) -> np.ndarray | None:
        return None if self.variance is None else np.sqrt(self.variance)


def tokenize_response(tokenizer: PreTrainedTokenizerBase, response: Text, prompt: Text | None = None) -> list[int]:
    """Token ids of `prompt + response`, built the way `trl.RewardTrainer` builds `chosen_ids`."""
    example = {"completion": response} if prompt is None else {"prompt": prompt, "completion": response}
    if is_conversational(example):
        messages = (prompt or []) + response
        return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
    text = (prompt or "") + response
    if tokenizer.eos_token and not text.endswith(tokenizer.eos_token):
        text = text + tokenizer.eos_token
    return list(tokenizer(text=text)["input_ids"])


def _pad_batch(batch: list[list[int]], pad_token_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


@torch.no_grad()
def score_token_ids(
    model: PreTrainedModel,
    token_ids: list[list[int]],
    pad_token_id: int,
    batch_size: int = 16,
    show_progress: bool = False,
    desc: str = "Scoring",
) -> RewardScores:
    """Score pre-tokenised sequences, longest first so each batch pads little; results come back in input order."""
    if not token_ids:
        raise ValueError("Nothing to score: the list of sequences is empty.")
    empty = [i for i, ids in enumerate(token_ids) if len(ids) == 0]
    if empty:
        raise ValueError(f"Cannot score empty sequences (rows {empty[:10]}).")
    gaussian = isinstance(model, GaussianRewardModel)
    order = np.argsort([-len(ids) for ids in token_ids], kind="stable")
    mean = np.empty(len(token_ids), dtype=np.float64)
    variance = np.empty(len(token_ids), dtype=np.float64) if gaussian else None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=desc, disable=not show_progress, unit="batch"):
        rows = order[start : start + batch_size]
        outputs = model(**_pad_batch([token_ids[i] for i in rows], pad_token_id, device))
        mean[rows] = outputs.logits.squeeze(-1).float().cpu().numpy()
        if gaussian:
            variance[rows] = outputs.variance.float().cpu().numpy()
    model.train(was_training)
    return RewardScores(mean=mean, variance=variance)


def score_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    responses: list[Text],
    prompts: list[Text] | None = None,
    batch_size: int = 16,
    max_length: int | None = None,
    show_progress: bool = False,
) -> RewardScores:
    """Score responses (optionally with prompts) with a reward model and its own tokenizer / chat template.

    Sequences longer than `max_length` keep their last `max_length` tokens (the end of the response is what the
    reward is read from); how many were truncated is logged.
    """
    if prompts is not None and len(prompts) != len(responses):
        raise ValueError(f"Got {len(prompts)} prompts for {len(responses)} responses; they must pair up one to one.")
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_token_id is None:
        raise ValueError(f"The tokenizer {type(tokenizer).__name__} has neither a pad nor an EOS token to pad with.")
    token_ids = [
        tokenize_response(tokenizer, response, None if prompts is None else prompts[i])
        for i, response in enumerate(responses)
    ]
    if max_length is not None:
        truncated = sum(len(ids) > max_length for ids in token_ids)
        if truncated:
            logger.warning(f"{truncated}/{len(token_ids)} sequences exceed max_length={max_length}; kept their end.")
        token_ids = [ids[-max_length:] for ids in token_ids]
    return score_token_ids(model, token_ids, pad_token_id, batch_size=batch_size, show_progress=show_progress)
