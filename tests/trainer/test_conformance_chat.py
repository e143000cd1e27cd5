"""Drop-in conformance, chat templates, tool calls and remote code: `chat_template_kwargs` per example,
`chat_template_path` (a tokenizer to clone the template from, or a Jinja file), conversational data with tool calls
(`tools` as a JSON string or as a list of dicts) and `trust_remote_code` with an `auto_map` model; both modes."""

import json

import pytest
import torch
from conformance import (
    MODES,
    assert_trained,
    preference_dataset,
    reward_config,
    tiny_model_ids,
    train_and_assert_all_changed,
)
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_anchor import AnchorGaussianRewardTrainer, GaussianRewardModel


@pytest.fixture(scope="session")
def model_ids(tmp_path_factory, tokenizer_dir) -> dict[str, str]:
    return tiny_model_ids(tmp_path_factory, tokenizer_dir)

SYSTEM_SWITCH_TEMPLATE = (
    "{% if with_system %}<|system|>be brief<eos>{% endif %}"
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<eos>{% endfor %}"
)
TOOL_TEMPLATE = (
    "{% if tools %}<|system|>{% for tool in tools %}{{ tool['function']['name'] }};{% endfor %}<eos>{% endif %}"
    "{% for message in messages %}<|{{ message['role'] }}|>"
    "{% if message['tool_calls'] %}{% for call in message['tool_calls'] %}call {{ call['function']['name'] }}"
    "{% endfor %}{% else %}{{ message['content'] }}{% endif %}<eos>{% endfor %}"
)
QWEN_LIKE_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
)


@pytest.mark.parametrize("reward_type", MODES)
def test_train_with_chat_template_kwargs(tmp_path, model_ids, reward_type):
    tokenizer = AutoTokenizer.from_pretrained(model_ids["qwen2"])
    tokenizer.chat_template = SYSTEM_SWITCH_TEMPLATE
    dataset = preference_dataset("conversational_implicit_prompt_preference")
    dataset = dataset.add_column("chat_template_kwargs", [{"with_system": bool(i % 2)} for i in range(len(dataset))])
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2"], args=reward_config(tmp_path, reward_type), train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert trainer.processing_class.chat_template == SYSTEM_SWITCH_TEMPLATE
    system_ids = tokenizer("<|system|>be brief<eos>").input_ids
    user_ids = tokenizer("<|user|>").input_ids
    for i in range(4):  # the template saw each row's own kwargs
        for side in ("chosen_ids", "rejected_ids"):
            ids = trainer.train_dataset[i][side]
            expected = system_ids + user_ids if i % 2 else user_ids
            assert ids[: len(expected)] == expected, (i, side)
    train_and_assert_all_changed(trainer)


@pytest.fixture
def template_source_dir(tmp_path, tokenizer_dir):
    """A tokenizer to clone a chat template from: it brings two special tokens the model's tokenizer lacks."""
    source = AutoTokenizer.from_pretrained(tokenizer_dir)
    source.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    source.eos_token = "<|im_end|>"
    source.chat_template = QWEN_LIKE_TEMPLATE
    source.save_pretrained(tmp_path / "template_source")
    return str(tmp_path / "template_source")


@pytest.mark.parametrize("reward_type", MODES)
def test_train_with_chat_template_cloned_from_a_tokenizer(tmp_path, model_ids, template_source_dir, reward_type):
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2_no_template"],
        args=reward_config(tmp_path, reward_type, chat_template_path=template_source_dir),
        train_dataset=preference_dataset("conversational_preference"),
    )
    tokenizer = trainer.processing_class
    assert tokenizer.chat_template == QWEN_LIKE_TEMPLATE and tokenizer.eos_token == "<|im_end|>"
    # The new tokens got embedding rows (TRL rounds the vocabulary up to a multiple of 64).
    embeddings = trainer.model.get_input_embeddings().weight
    assert embeddings.shape[0] % 64 == 0 and embeddings.shape[0] > tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") == trainer.train_dataset[0]["chosen_ids"][0]
    train_and_assert_all_changed(trainer)


@pytest.mark.parametrize("reward_type", MODES)
def test_train_with_chat_template_from_a_jinja_file(tmp_path, model_ids, reward_type):
    template = tmp_path / "template.jinja"
    template.write_text(SYSTEM_SWITCH_TEMPLATE.replace("with_system", "false"))
    args = reward_config(tmp_path / "out", reward_type, chat_template_path=str(template), save_strategy="steps",
                         save_steps=2)
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2_no_template"], args=args, train_dataset=preference_dataset("conversational_preference")
    )
    train_and_assert_all_changed(trainer)
    # The checkpoint carries the template the model was trained with.
    assert (tmp_path / "out" / "checkpoint-2" / "chat_template.jinja").read_text() == template.read_text()


def _tool_call_dataset(tools_as_json: bool) -> Dataset:
    add = {"type": "function", "function": {
        "name": "add", "description": "add two numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}},
    }}
    negate = {"type": "function", "function": {
        "name": "negate", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}},
    }}
    # Rows with different tool schemas: stored as Arrow structs, the missing keys come back as None.
    tools = [[add] if i % 2 else [add, negate] for i in range(8)]
    prompt = [
        {"role": "user", "content": "what is two plus two"},
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 2}}}],
         "content": None},
        {"role": "tool", "name": "add", "content": "4"},
    ]
    return Dataset.from_dict({
        "prompt": [prompt] * 8,
        "chosen": [[{"role": "assistant", "content": "it is four"}]] * 8,
        "rejected": [[{"role": "assistant", "content": "it is five"}]] * 8,
        "tools": [json.dumps(t) for t in tools] if tools_as_json else tools,
    })


@pytest.mark.parametrize("reward_type", MODES)
@pytest.mark.parametrize("tools_as_json", [True, False], ids=["tools_json_string", "tools_list_of_dicts"])
def test_train_with_tool_call_data(tmp_path, model_ids, reward_type, tools_as_json):
    tokenizer = AutoTokenizer.from_pretrained(model_ids["qwen2"])
    tokenizer.chat_template = TOOL_TEMPLATE
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2"], args=reward_config(tmp_path, reward_type, per_device_train_batch_size=2),
        train_dataset=_tool_call_dataset(tools_as_json), processing_class=tokenizer,
    )
    conversation = "<|user|>what is two plus two<eos><|assistant|>call add<eos><|tool|>4<eos><|assistant|>"
    for i, tools in ((0, "add;negate;"), (1, "add;")):
        expected = f"<|system|>{tools}<eos>{conversation}it is four<eos>"
        assert tokenizer.decode(trainer.train_dataset[i]["chosen_ids"]) == expected
    train_and_assert_all_changed(trainer)


# ------------------------------------------------------------------------------------------------------ remote code
@pytest.mark.parametrize("reward_type", MODES)
def test_trust_remote_code(tmp_path, model_ids, reward_type):
    with pytest.raises(ValueError, match="custom code"):
        AnchorGaussianRewardTrainer(
            model=model_ids["remote"], args=reward_config(tmp_path, reward_type), train_dataset=preference_dataset()
        )
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["remote"],
        args=reward_config(tmp_path, reward_type, trust_remote_code=True),
        train_dataset=preference_dataset(),
    )
    # The sequence-classification class comes from the checkpoint's `auto_map`, in both modes.
    remote_class = next(c for c in type(trainer.model).__mro__ if c.__name__ == "RemoteForSequenceClassification")
    assert remote_class.__module__.startswith("transformers_modules.")
    if reward_type == "gaussian":
        assert type(trainer.model).__name__ == "GaussianRemoteForSequenceClassification"
        assert isinstance(trainer.model, GaussianRewardModel)
    else:
        assert type(trainer.model) is remote_class
    trainer.train()
    assert_trained(trainer)


def test_remote_code_gaussian_checkpoint_round_trip(tmp_path, model_ids):
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["remote"],
        args=reward_config(tmp_path, "gaussian", trust_remote_code=True),
        train_dataset=preference_dataset(),
    )
    trainer.train()
    trainer.save_model(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    # The directory is the remote model's own checkpoint: its code file, its class in `architectures` and `auto_map`.
    assert (tmp_path / "saved" / "modeling_remote.py").is_file()
    assert config["architectures"] == ["RemoteForSequenceClassification"]
    auto_map = config["auto_map"]
    assert auto_map["AutoModelForSequenceClassification"] == "modeling_remote.RemoteForSequenceClassification"
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        trained = trainer.model.eval()(**inputs)
        plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved", trust_remote_code=True).eval()
        gaussian = GaussianRewardModel.from_pretrained(tmp_path / "saved", trust_remote_code=True).eval()
        assert type(plain).__name__ == "RemoteForSequenceClassification"
        torch.testing.assert_close(plain(**inputs).logits, trained.logits)
        reloaded = gaussian(**inputs)
    torch.testing.assert_close(reloaded.mean, trained.mean)
    torch.testing.assert_close(reloaded.variance, trained.variance)
