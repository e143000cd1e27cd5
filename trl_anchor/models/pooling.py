"""The token a reward model reads its reward at: one definition for padded rows, packed sequences, scoring and PPO.

transformers' decoder `...ForSequenceClassification` classes (GPT-2, Llama, Qwen, Mistral, ...) read the logit at the
rightmost token whose id is not `config.pad_token_id`. A `GaussianRewardModel` checkpoint must load in plain
`AutoModelForSequenceClassification` with logit = μ, so every path that reads μ or σ² (the padded forward,
padding-free packing, `score_responses`, `PPORewardModel`) reads them at that same position, given by
`reward_token_index`.

When the pad token is also the EOS token (TRL sets `pad_token = eos_token` for tokenizers without a pad token:
Llama-3.x, GPT-2, Mistral) a trailing EOS counts as padding, and the reward is read at the token *before* it. To read
it at the EOS, give the tokenizer a dedicated pad token (TRL's `pad_token` config field, e.g. Llama-3.1's
`<|finetune_right_pad_id|>`).
"""

import torch


def reward_token_index(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """Index, along the last dimension of `input_ids`, of the token whose hidden state the reward is read from.

    The rightmost token whose id is not `pad_token_id` (left or right padding), exactly as transformers' decoder
    sequence-classification models pool; 0 for a sequence of pad tokens only, and the last position when
    `pad_token_id` is `None`.

    Example:

    ```python
    >>> import torch
    >>> from trl_anchor.models.pooling import reward_token_index

    >>> eos = pad = 1
    >>> reward_token_index(torch.tensor([[5, 6, eos, pad], [7, 8, 9, eos]]), pad_token_id=pad)
    tensor([1, 2])
    >>> reward_token_index(torch.tensor([5, 6, eos]), pad_token_id=0)  # a dedicated pad token: read at the EOS
    tensor(2)
    ```
    """
    length = input_ids.shape[-1]
    if pad_token_id is None:
        return torch.full(input_ids.shape[:-1], length - 1, dtype=torch.long, device=input_ids.device)
    non_pad = (input_ids != pad_token_id).to(torch.int32)
    positions = torch.arange(length, device=input_ids.device, dtype=torch.int32)
    return (positions * non_pad).argmax(-1)
