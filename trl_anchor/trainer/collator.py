"""`DataCollatorForAnchoredPreference`: TRL's preference collator plus soft labels, anchors and padding-free
packing."""

from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.reward_trainer import DataCollatorForPreference

from ..anchors import ANCHOR_WEIGHT
from ..models.packing import pack_preference_examples
from .anchor_columns import CHOSEN_COUNTS, REJECTED_COUNTS, SOFT_LABEL
from .anchor_groups import ANCHOR_GROUP_VARIANCE, ANCHOR_OFFSET


@dataclass
class DataCollatorForAnchoredPreference(DataCollatorForPreference):
    """[`trl.trainer.reward_trainer.DataCollatorForPreference`] that also batches soft labels and anchors.

    Besides `input_ids`/`attention_mask` (chosen first, then rejected) and the optional `margin`, the batch holds
    `soft_label` (B,), and when the examples carry anchors `chosen_anchor_targets`/`rejected_anchor_targets` (class
    count vectors, B × (K+1)) and `anchor_weight` (B,), with anchor groups also `anchor_offset` and
    `anchor_group_variance` (B,; see `trl_anchor.trainer.anchor_groups`).

    With `padding_free=True` the sequences are packed without padding instead (`input_ids`, `position_ids`,
    `sequence_ends`, `sequence_lengths`; see `trl_anchor.models.packing`), in rows as wide as the longest sequence, or
    in one row with `pack_into_one_row=True` (FlashAttention).

    Example:

    ```python
    >>> collator = DataCollatorForAnchoredPreference(pad_token_id=0)
    >>> batch = collator([
    ...     {"chosen_ids": [1, 2], "rejected_ids": [3], "soft_label": 0.7,
    ...      "chosen_anchor_targets": [0, 1, 0], "rejected_anchor_targets": [1, 0, 0], "anchor_weight": 1.0},
    ... ])
    >>> batch["soft_label"], batch["chosen_anchor_targets"]
    (tensor([0.7000]), tensor([[0., 1., 0.]]))
    ```
    """

    padding_free: bool = False
    pack_into_one_row: bool = False

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.padding_free:
            output = pack_preference_examples(
                examples, self.pad_token_id, self.pack_into_one_row, self.pad_to_multiple_of
            )
        else:
            output = super().torch_call(examples)
        output[SOFT_LABEL] = torch.tensor([float(ex.get(SOFT_LABEL, 1.0)) for ex in examples], dtype=torch.float)
        if CHOSEN_COUNTS in examples[0]:
            for key in (CHOSEN_COUNTS, REJECTED_COUNTS):
                output[key] = torch.tensor([ex[key] for ex in examples], dtype=torch.float)
            output[ANCHOR_WEIGHT] = torch.tensor([float(ex[ANCHOR_WEIGHT]) for ex in examples], dtype=torch.float)
        for key in (ANCHOR_OFFSET, ANCHOR_GROUP_VARIANCE):
            if key in examples[0]:
                output[key] = torch.tensor([float(ex[key]) for ex in examples], dtype=torch.float)
        return output
