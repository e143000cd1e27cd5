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

from ..losses import ordinal_log_probs
from ..models.configuration_gaussian import anchor_scale, attribute_record, gaussian_settings
from ..models.modeling_gaussian import GaussianRewardModel

logger = logging.get_logger(__name__)

Text = str | list[dict[str, Any]]


@dataclass
class RewardScores:
    """Scores of a list of responses, in input order. `variance` is `None` for a non-Gaussian (BT) reward model;
    `thresholds` are the anchor thresholds τ an anchored Gaussian model was trained with (else `None`), and
    `group_variance` the variance `s²` of its train groups' base rates when it was trained with `anchor_group_column`
    (`trl_anchor.trainer.anchor_groups`): anchor class probabilities of a response of a new group use `σ² + s²`.
    `mean_offset` is the model's recorded `anchor_mean_offset` μ₀ (a mean head without a bias starts at μ = 0 and
    the anchors read μ + μ₀, see `trl_anchor.trainer.head_init`); anchor class probabilities use `anchor_mean`.

    For a multi-attribute model `mean` and `variance` have shape `(num_responses, A)` and `attributes` names the
    columns (SteerLM-style data selection reads them directly); `RewardTransform` combines them into one reward.
    """

    mean: np.ndarray
    variance: np.ndarray | None
    attributes: list[str] | None = None
    thresholds: list[float] | None = None
    group_variance: float = 0.0
    mean_offset: float = 0.0

    @property
    def anchor_mean(self) -> np.ndarray:
        """μ of a response's latent reward relative to the anchor thresholds: `μ + μ₀` (μ when no offset)."""
        return self.mean + self.mean_offset

    @property
    def std(self) -> np.ndarray | None:
        return None if self.variance is None else np.sqrt(self.variance)

    @property
    def anchor_std(self) -> np.ndarray | None:
        """σ of a response's latent reward relative to the anchor thresholds: `sqrt(σ² + s²)` (σ without groups)."""
        return None if self.variance is None else np.sqrt(self.variance + self.group_variance)

    @property
    def class_probs(self) -> np.ndarray | None:
        """P(anchor class j) of each response, shape `(N, K + 1)`; `None` without σ or anchors."""
        if self.variance is None or self.thresholds is None:
            return None
        log_probs = ordinal_log_probs(torch.as_tensor(self.anchor_mean), torch.as_tensor(self.anchor_std),
                                      torch.tensor(self.thresholds, dtype=torch.float64))
        return log_probs.exp().numpy()

    @property
    def expected_class(self) -> np.ndarray | None:
        """Expected anchor class `Σ_j j·π_j` (e.g. the expected crowd vote minus one); `None` without σ or anchors."""
        probs = self.class_probs
        return None if probs is None else probs @ np.arange(probs.shape[-1], dtype=np.float64)

    @property
    def p_top(self) -> np.ndarray | None:
        """Probability of the top anchor class (e.g. P(funny)); `None` without σ or anchors."""
        probs = self.class_probs
        return None if probs is None else probs[:, -1]


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
    """Score pre-tokenised sequences, longest first so each batch pads little; results come back in input order.

    A non-finite μ or σ² (a diverged or corrupted model) raises a `ValueError` naming the rows, never a NaN score."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if not token_ids:
        raise ValueError("Nothing to score: the list of sequences is empty.")
    empty = [i for i, ids in enumerate(token_ids) if len(ids) == 0]
    if empty:
        raise ValueError(f"Cannot score empty sequences (rows {empty[:10]}).")
    gaussian = isinstance(model, GaussianRewardModel)
    order = np.argsort([-len(ids) for ids in token_ids], kind="stable")
    attributes = _attribute_names(model)
    shape = (len(token_ids),) if attributes is None else (len(token_ids), len(attributes))
    mean = np.empty(shape, dtype=np.float64)
    variance = np.empty(shape, dtype=np.float64) if gaussian else None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=desc, disable=not show_progress, unit="batch"):
        rows = order[start : start + batch_size]
        outputs = model(**_pad_batch([token_ids[i] for i in rows], pad_token_id, device))
        mean[rows] = outputs.logits.reshape(len(rows), *shape[1:]).float().cpu().numpy()
        if gaussian:
            variance[rows] = outputs.variance.reshape(len(rows), *shape[1:]).float().cpu().numpy()
    model.train(was_training)
    _check_finite(mean, "μ")
    if variance is not None:
        _check_finite(variance, "σ²")
    # A multi-attribute model's thresholds are per attribute (`attribute_thresholds`), not one anchored reward's.
    settings = gaussian_settings(model.config) if gaussian and attributes is None else {}
    return RewardScores(
        mean=mean,
        variance=variance,
        attributes=attributes,
        thresholds=settings.get("anchor_thresholds"),
        **anchor_scale(settings),
    )


def combined_scores(scores: RewardScores, weights) -> RewardScores:
    """One Gaussian reward per response from per-attribute scores: `r = Σ_a w_a μ_a`, `Var(r) = Σ_a w_a² σ_a²`
    (attributes independent given the response); scalar scores pass through unchanged."""
    if scores.attributes is None:
        return scores
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(scores.attributes),):
        raise ValueError(f"Got {weights.size} weights for the attributes {scores.attributes}.")
    variance = None if scores.variance is None else scores.variance @ weights**2
    return RewardScores(mean=scores.mean @ weights, variance=variance)


def model_attribute_weights(model: PreTrainedModel) -> list[float] | None:
    """The default attribute weights recorded in a multi-attribute model's config (`None` for a one-output model)."""
    settings = attribute_record(model.config) or {}
    return settings.get("attribute_weights") if _attribute_names(model) is not None else None


def _attribute_names(model: PreTrainedModel) -> list[str] | None:
    """The attributes of a multi-attribute model (Gaussian or the plain MSE arm), `None` for a one-output model."""
    config = model.config
    attributes = (attribute_record(config) or {}).get("attributes")
    if attributes is None and config.num_labels > 1:
        attributes = [config.id2label[i] for i in range(config.num_labels)]
    return None if attributes is None or len(attributes) == 1 else list(attributes)


def _check_finite(values: np.ndarray, what: str) -> None:
    # One row per sequence (and one column per attribute for a multi-attribute model).
    bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(1))
    if bad.size:
        raise ValueError(
            f"The reward model returned a non-finite {what} for {bad.size} of {len(values)} sequences (rows "
            f"{bad[:10].tolist()}{' …' if bad.size > 10 else ''}: {values[bad[0]]}); its weights may have diverged."
        )


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

    Batches are padded with the pad token id the model pools on (`model.config.pad_token_id`), so a padded row is
    scored exactly like the sequence alone. Sequences longer than `max_length` keep their leading special tokens (the
    `[CLS]` an encoder pools on, a decoder's BOS) and then their last tokens (the end of the response, where a decoder
    reads the reward); how many were truncated is logged. `max_length=None` means the model's position limit for
    models with learned absolute positions (512 for BERT/MiniLM, `n_positions` for GPT-2), and no limit otherwise.
    """
    if prompts is not None and len(prompts) != len(responses):
        raise ValueError(f"Got {len(prompts)} prompts for {len(responses)} responses; they must pair up one to one.")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"`max_length` must be a positive integer or None, got {max_length!r}.")
    missing = [i for i, response in enumerate(responses) if response is None]
    if missing:
        raise ValueError(f"Responses at rows {missing[:10]} are None; there is nothing to score.")
    not_text = [i for i, response in enumerate(responses) if not isinstance(response, (str, list))]
    if not_text:
        raise ValueError(
            f"Responses must be text or message lists; row {not_text[0]} is {type(responses[not_text[0]]).__name__} "
            f"{responses[not_text[0]]!r}."
        )
    if max_length is None:
        max_length = position_limit(model)
    pad_token_id = pooling_pad_token_id(model, tokenizer)
    token_ids = [
        tokenize_response(tokenizer, response, None if prompts is None else prompts[i])
        for i, response in enumerate(responses)
    ]
    if max_length is not None:
        truncated = sum(len(ids) > max_length for ids in token_ids)
        if truncated:
            logger.warning(f"{truncated}/{len(token_ids)} sequences exceed max_length={max_length}; kept their end.")
        special = set(tokenizer.all_special_ids)
        token_ids = [truncate_keeping_special_prefix(ids, max_length, special) for ids in token_ids]
    return score_token_ids(model, token_ids, pad_token_id, batch_size=batch_size, show_progress=show_progress)


def position_limit(model: PreTrainedModel) -> int | None:
    """The longest sequence a model with a learned absolute position table can embed (BERT's 512, GPT-2's
    `n_positions`), `None` for rotary/relative positions. RoBERTa-style tables reserve `padding_idx + 1` rows."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and name.rsplit(".", 1)[-1] in _POSITION_TABLES:
            offset = 0 if module.padding_idx is None else module.padding_idx + 1
            return module.num_embeddings - offset
    return None


_POSITION_TABLES = ("position_embeddings", "wpe")


def pooling_pad_token_id(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """The id to pad batches with: the model's `pad_token_id` (the id its pooling skips), else the tokenizer's pad or
    EOS token."""
    pad_token_id = model.config.get_text_config().pad_token_id
    if pad_token_id is None:
        pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_token_id is None:
        raise ValueError(
            f"Neither the model's config nor the tokenizer {type(tokenizer).__name__} has a pad or EOS token to pad "
            "with; set `model.config.pad_token_id`."
        )
    return pad_token_id


def truncate_keeping_special_prefix(token_ids: list[int], max_length: int, special_ids: set[int]) -> list[int]:
    """The leading special tokens of `token_ids` followed by its last tokens, `max_length` in all."""
    if len(token_ids) <= max_length:
        return token_ids
    prefix = 0
    while prefix < len(token_ids) and token_ids[prefix] in special_ids and prefix < max_length - 1:
        prefix += 1
    return token_ids[:prefix] + token_ids[len(token_ids) - (max_length - prefix) :]
