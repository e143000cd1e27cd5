"""Padding-free reward-model training: the chosen and rejected sequences of a batch are packed without padding.

Reward batches mix short and long responses, and TRL's `RewardTrainer` pads every sequence to the longest one of the
batch, so on mixed-length data most of the compute goes to pad tokens. Here the sequences are laid end to end and kept
independent by `position_ids` that restart at 0 for every sequence, with no `attention_mask`. transformers (≥ 5) turns
such `position_ids` into a block-diagonal causal mask for eager, SDPA and flex attention
(`masking_utils.find_packed_sequence_indices`) and into varlen `cu_seqlens` for FlashAttention
(`modeling_flash_attention_utils`). The reward of each sequence is read through
`GaussianRewardModel.forward(sequence_ends=...)` at the token the padded batch reads it at (its last non-pad token,
`trl_anchor.models.pooling.reward_token_index`), so μ and σ² are exactly those of the padded batch and of plain
transformers, also when the pad token is the EOS token.

Two layouts:

- rows (default): sequences are placed first-fit-decreasing into rows as wide as the longest sequence of the batch.
  Eager/SDPA attention computes a dense score matrix per row, so narrow rows keep the attention cost at or below the
  padded batch's while the tokens processed drop to about the real tokens.
- one row (`pack_into_one_row=True`): every sequence in a single row, the layout FlashAttention needs (transformers
  only infers varlen boundaries from `position_ids` for a batch of one row).

Supported backbones: decoders whose reward head reads every position (GPT-2, Llama, Qwen, Mistral, Gemma, ...) and
whose attention mask is built by transformers' `create_causal_mask`. Encoders such as BERT/MiniLM pool before their
head and are rejected with an error.
"""

from typing import Any

import torch

from .pooling import reward_token_index

SEQUENCE_ENDS = "sequence_ends"
SEQUENCE_LENGTHS = "sequence_lengths"


def pack_sequences(
    sequences: list[list[int]],
    pad_token_id: int,
    pack_into_one_row: bool = False,
    pad_to_multiple_of: int | None = None,
) -> dict[str, torch.Tensor]:
    """Pack token sequences into padding-free rows.

    Returns `input_ids` and `position_ids` of shape `(rows, width)`, `sequence_ends` (the flat index
    `row * width + column` of the token each sequence's reward is read at, in input order: its last token whose id is
    not `pad_token_id`, as in a padded batch) and `sequence_lengths`. The unused tail of a row holds pad tokens whose
    positions restart at 0: a separate dummy sequence that no real token attends to.

    Example:

    ```python
    >>> from trl_anchor.models.packing import pack_sequences

    >>> batch = pack_sequences([[1, 2, 3], [4], [5, 6]], pad_token_id=0)
    >>> batch["input_ids"]
    tensor([[1, 2, 3],
            [5, 6, 4]])
    >>> batch["position_ids"]
    tensor([[0, 1, 2],
            [0, 1, 0]])
    >>> batch["sequence_ends"]
    tensor([2, 5, 4])
    ```
    """
    lengths = [len(seq) for seq in sequences]
    if not lengths or min(lengths) == 0:
        empty = lengths.index(0) if lengths else None
        raise ValueError(f"Cannot pack an empty sequence (sequence {empty} of the batch has no tokens).")
    width = sum(lengths) if pack_into_one_row else max(lengths)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    rows = [list(range(len(lengths)))] if pack_into_one_row else _first_fit_decreasing(lengths, width)

    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    position_ids = torch.empty((len(rows), width), dtype=torch.long)
    ends = torch.empty(len(lengths), dtype=torch.long)
    for row, members in enumerate(rows):
        offset = 0
        for index in members:
            length = lengths[index]
            tokens = torch.as_tensor(sequences[index], dtype=torch.long)
            input_ids[row, offset : offset + length] = tokens
            position_ids[row, offset : offset + length] = torch.arange(length)
            ends[index] = row * width + offset + reward_token_index(tokens, pad_token_id)
            offset += length
        position_ids[row, offset:] = torch.arange(width - offset)
    return {
        "input_ids": input_ids,
        "position_ids": position_ids,
        SEQUENCE_ENDS: ends,
        SEQUENCE_LENGTHS: torch.tensor(lengths, dtype=torch.long),
    }


def _first_fit_decreasing(lengths: list[int], width: int) -> list[list[int]]:
    rows, free = [], []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, space in enumerate(free) if space >= lengths[index]), None)
        if row is None:
            rows.append([])
            free.append(width)
            row = len(rows) - 1
        rows[row].append(index)
        free[row] -= lengths[index]
    return rows


def pack_preference_examples(
    examples: list[dict[str, Any]],
    pad_token_id: int,
    pack_into_one_row: bool = False,
    pad_to_multiple_of: int | None = None,
) -> dict[str, torch.Tensor]:
    """The padding-free counterpart of TRL's `DataCollatorForPreference`: chosen sequences first, then rejected ones
    (so `sequence_ends[:B]` are the chosen responses), plus `margin` when the examples carry one."""
    sequences = [ex["chosen_ids"] for ex in examples] + [ex["rejected_ids"] for ex in examples]
    output = pack_sequences(sequences, pad_token_id, pack_into_one_row, pad_to_multiple_of)
    if "margin" in examples[0]:
        output["margin"] = torch.tensor([ex["margin"] for ex in examples], dtype=torch.float)
    return output


def reward_model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model keyword arguments of a padded or a packed batch.

    A packed batch must not carry an `attention_mask`: transformers only builds the per-sequence mask from
    `position_ids` when the mask is absent.
    """
    if SEQUENCE_ENDS in batch:
        return {key: batch[key] for key in ("input_ids", "position_ids", SEQUENCE_ENDS)}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def num_real_tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Number of non-pad tokens of a padded or a packed batch."""
    if SEQUENCE_ENDS in batch:
        return batch[SEQUENCE_LENGTHS].sum()
    return batch["attention_mask"].sum()


def padding_free_collator_kwargs(args, model) -> dict[str, bool]:
    """Collator settings for `args.padding_free`: packed rows, or one packed row for FlashAttention backbones."""
    if not getattr(args, "padding_free", False):
        return {}
    attn_implementation = getattr(model.config, "_attn_implementation", None) or ""
    return {"padding_free": True, "pack_into_one_row": "flash" in attn_implementation}
