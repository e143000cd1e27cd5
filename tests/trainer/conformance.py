"""Helpers of the drop-in conformance tests: `AnchorGaussianRewardTrainer` must do what `trl.RewardTrainer` does,
with `reward_type="gaussian"` (the default) and `"bt"`.

The behaviours follow TRL's own `tests/test_reward_trainer.py`; the tests are written for this project, on tiny local
checkpoints (`tiny_model_ids`, the `model_ids` fixture of each test module) and small in-memory datasets of every
preference type."""

import json
from pathlib import Path

import torch
from datasets import Dataset
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)
from trl import RewardConfig

from trl_anchor import AnchorGaussianRewardConfig

MODES = ["gaussian", "bt"]
DATASET_TYPES = [
    "standard_preference",
    "conversational_preference",
    "standard_implicit_prompt_preference",
    "conversational_implicit_prompt_preference",
]
N = 8
_PROMPTS = ["the cartoon shows a cat", "what is two plus two", "tell me about the fox", "is the caption funny"]
_CHOSEN = ["a helpful answer explains the reason", "it is four", "the quick brown fox jumps", "i think it is funny"]
_REJECTED = ["this response is rude", "it is five", "the lazy dog", "some people disagree"]


def reward_config(tmp_path, reward_type: str, **kwargs) -> RewardConfig:
    """A small CPU run. Gaussian mode gets a plain `trl.RewardConfig`, as a TRL user passes it (the trainer upgrades
    it); the BT arm needs `AnchorGaussianRewardConfig(reward_type="bt")`."""
    values = dict(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_steps=2, logging_steps=1,
        per_device_train_batch_size=4, per_device_eval_batch_size=4, save_strategy="no", seed=0,
    )
    values.update(kwargs)
    if reward_type == "gaussian":
        return RewardConfig(**values)
    return AnchorGaussianRewardConfig(reward_type=reward_type, **values)


def preference_dataset(dataset_type: str = "standard_implicit_prompt_preference", n: int = N, **columns) -> Dataset:
    """`n` preference pairs in one of TRL's dataset types (standard or conversational, explicit or implicit prompt)."""
    prompts = [f"{_PROMPTS[i % 4]} {i}" for i in range(n)]
    chosen = [_CHOSEN[i % 4] for i in range(n)]
    rejected = [_REJECTED[i % 4] for i in range(n)]
    conversational = dataset_type.startswith("conversational")
    if conversational:
        prompts = [[{"role": "user", "content": p}] for p in prompts]
        chosen = [[{"role": "assistant", "content": c}] for c in chosen]
        rejected = [[{"role": "assistant", "content": r}] for r in rejected]
    else:  # text responses continue the prompt after a space
        chosen, rejected = [" " + c for c in chosen], [" " + r for r in rejected]
    if "implicit" in dataset_type:
        rows = {
            "chosen": [p + c for p, c in zip(prompts, chosen, strict=True)],
            "rejected": [p + r for p, r in zip(prompts, rejected, strict=True)],
        }
    else:
        rows = {"prompt": prompts, "chosen": chosen, "rejected": rejected}
    return Dataset.from_dict({**rows, **columns})


def snapshot(trainer) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in trainer.model.named_parameters()}


def assert_trained(trainer) -> None:
    """What every TRL training test asserts first: the run finished and logged its train loss."""
    assert trainer.state.log_history[-1]["train_loss"] is not None


def assert_all_changed(trainer, before: dict[str, torch.Tensor]) -> None:
    """Every parameter moved (full fine-tuning), in Gaussian mode the variance head included."""
    unchanged = [name for name, old in before.items() if torch.equal(old, trainer.model.get_parameter(name))]
    assert not unchanged, f"parameters that did not change: {unchanged}"


def train_and_assert_all_changed(trainer) -> None:
    """Train, then the assertions of TRL's full fine-tuning tests: a logged train loss and every parameter moved."""
    before = snapshot(trainer)
    trainer.train()
    assert_trained(trainer)
    assert_all_changed(trainer, before)


# ------------------------------------------------------------------------------------------- tiny local model ids
_SIZES = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)

# A remote-code model package: its classes exist only in the checkpoint directory and are found through `auto_map`.
_REMOTE_CONFIG_CODE = '''from transformers import Qwen2Config


class RemoteConfig(Qwen2Config):
    model_type = "remote"
'''
_REMOTE_MODELING_CODE = '''from torch import nn
from transformers import Qwen2ForCausalLM, Qwen2ForSequenceClassification, Qwen2Model, Qwen2PreTrainedModel

from .configuration_remote import RemoteConfig


class RemoteForCausalLM(Qwen2ForCausalLM):
    config_class = RemoteConfig


class RemoteForSequenceClassification(Qwen2ForSequenceClassification):
    config_class = RemoteConfig

    def __init__(self, config):  # builds its backbone itself: `AutoModel` does not know the "remote" type
        Qwen2PreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.model = Qwen2Model(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()
'''


def _token_ids(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def _save(model, tokenizer, path: Path) -> str:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


_MODEL_IDS: dict[str, dict[str, str]] = {}


def tiny_model_ids(tmp_path_factory, tokenizer_dir) -> dict[str, str]:
    """Paths of tiny random checkpoints (built once per test session), by name:

    - `qwen2`, `qwen3_moe`, `llama`: causal LMs (a base model, as users start from); the Llama tokenizer has no pad
      token, so the trainers pad with its EOS token.
    - `qwen2_seq_cls`: a Qwen2 sequence-classification checkpoint with `num_labels=1`.
    - `qwen2_no_template`: a Qwen2 causal LM whose tokenizer has no chat template.
    - `remote`: a remote-code model (`model_type="remote"`, classes in the directory's own modules via `auto_map`).
    """
    if str(tokenizer_dir) not in _MODEL_IDS:
        _MODEL_IDS[str(tokenizer_dir)] = _build_model_ids(tmp_path_factory.mktemp("model_ids"), tokenizer_dir)
    return _MODEL_IDS[str(tokenizer_dir)]


def _build_model_ids(root: Path, tokenizer_dir) -> dict[str, str]:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    ids = {
        "qwen2": _save(Qwen2ForCausalLM(Qwen2Config(**_SIZES, **_token_ids(tokenizer))), tokenizer, root / "qwen2"),
        "qwen3_moe": _save(
            Qwen3MoeForCausalLM(Qwen3MoeConfig(
                **_SIZES, moe_intermediate_size=8, num_experts=4, num_experts_per_tok=2, head_dim=8,
                **_token_ids(tokenizer),
            )),
            tokenizer, root / "qwen3_moe",
        ),
        "qwen2_seq_cls": _save(
            Qwen2ForSequenceClassification(Qwen2Config(**_SIZES, num_labels=1, **_token_ids(tokenizer))),
            tokenizer, root / "qwen2_seq_cls",
        ),
    }
    no_pad = AutoTokenizer.from_pretrained(tokenizer_dir)
    no_pad.pad_token = None
    ids["llama"] = _save(
        LlamaForCausalLM(LlamaConfig(**_SIZES, **{**_token_ids(tokenizer), "pad_token_id": None})), no_pad,
        root / "llama",
    )
    no_template = AutoTokenizer.from_pretrained(tokenizer_dir)
    no_template.chat_template = None
    ids["qwen2_no_template"] = _save(
        Qwen2ForCausalLM(Qwen2Config(**_SIZES, **_token_ids(tokenizer))), no_template, root / "qwen2_no_template"
    )
    ids["remote"] = _remote_code_model(root / "remote", tokenizer)
    return ids


def _remote_code_model(path: Path, tokenizer) -> str:
    _save(Qwen2ForCausalLM(Qwen2Config(**_SIZES, **_token_ids(tokenizer))), tokenizer, path)
    (path / "configuration_remote.py").write_text(_REMOTE_CONFIG_CODE)
    (path / "modeling_remote.py").write_text(_REMOTE_MODELING_CODE)
    config = json.loads((path / "config.json").read_text())
    config.update(
        model_type="remote",
        architectures=["RemoteForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_remote.RemoteConfig",
            "AutoModelForCausalLM": "modeling_remote.RemoteForCausalLM",
            "AutoModelForSequenceClassification": "modeling_remote.RemoteForSequenceClassification",
        },
    )
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return str(path)
