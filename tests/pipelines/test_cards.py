from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer
from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.pipelines.cards import (
    EVALUATION_START,
    build_model_card,
    eval_results_from_metrics,
    rewardbench_eval_results,
    update_model_card,
)
from trl_anchor.pipelines.rewardbench import rewardbench_scores

SETTINGS = {
    "reward_type": "gaussian",
    "anchor_thresholds": [-0.6, 0.6],
    "anchor_form": "score",
    "anchor_lambda": 0.1,
    "anchor_fraction": 0.5,
    "anchor_percentiles": [25.0, 75.0],
    "variance_floor": 1e-4,
}


def _metrics(card):
    return {(r.dataset_type, r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results or []}


def test_card_parses_back_with_metadata_and_sections(tmp_path):
    card = build_model_card(
        model_name="gaussian-rm",
        settings=SETTINGS,
        base_model="Qwen/Qwen2.5-0.5B-Instruct",
        hub_model_id="me/gaussian-rm",
        dataset_name="me/prefs",
        license="apache-2.0",
        hyperparameters={"learning_rate": 1e-5, "anchor_lambda": 0.1},
        eval_results=eval_results_from_metrics(
            {"accuracy": 0.81, "ece": 0.04, "sigma_spearman_vote_spread": 0.3, "unknown_metric": 1.0},
            "me/prefs",
            dataset_split="test",
        ),
    )
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data
    assert data.license == "apache-2.0" and data.pipeline_tag == "text-classification"
    assert data.base_model == "Qwen/Qwen2.5-0.5B-Instruct" and data.datasets == ["me/prefs"]
    assert {"trl", "reward-model", "trl-anchor", "uncertainty"} <= set(data.tags)
    assert _metrics(loaded) == {
        ("me/prefs", "test", "Pairwise accuracy"): 0.81,
        ("me/prefs", "test", "Expected calibration error"): 0.04,
        ("me/prefs", "test", "Spearman ρ(σ, vote spread)"): 0.3,
    }
    text = loaded.text
    for expected in (
        "τ_1 = -0.6, τ_2 = 0.6",
        "P(class ≥ k) = Φ((μ − τ_k) / σ)",
        "25, 75 percentiles",
        "Anchor weight λ:** 0.1",
        "Fraction of train pairs with anchors:** 0.5",
        "external scores",
        'AutoModelForSequenceClassification.from_pretrained("me/gaussian-rm")',
        "RewardTransform",
        "quantile:0.1",
        "| learning_rate | 1e-05 |",
        "arXiv",
        "2605.11865",
        "vonwerra2020trl",
        "| me/prefs | test | Pairwise accuracy | 0.8100 |",
        "Transformers:",
    ):
        assert expected in text, expected


def test_bt_card_and_unknown_license(tmp_path):
    card = build_model_card(model_name="bt-rm", settings=None, dataset_name="data/local.jsonl")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.license == "other" and loaded.data.datasets is None and loaded.data.eval_results is None
    # The Hub requires `license_name` and `license_link` with `license: other`.
    assert (loaded.data.license_name, loaded.data.license_link) == ("unknown", "LICENSE")
    assert "**License: not set.**" in loaded.text
    with pytest.raises(ValueError, match="license_name.*license_link"):
        build_model_card(model_name="m", settings=None, license="other")
    named = build_model_card(
        model_name="m", settings=None, license="other", license_name="my-license", license_link="LICENSE.md"
    )
    assert (named.data.license_name, named.data.license_link) == ("my-license", "LICENSE.md")
    assert "License: not set" not in named.text
    assert "Bradley–Terry reward model" in loaded.text and "RewardTransform" not in loaded.text
    assert "Cite the anchor-guided" not in loaded.text and "No evaluation results yet" in loaded.text


def test_units_without_anchors(tmp_path):
    card = build_model_card(model_name="m", settings={"reward_type": "gaussian"}, license="mit")
    assert "identified only up to a common scale" in card.text and "No anchor labels were used" in card.text


def _saved_gaussian(tmp_path, tokenizer, readme: str | None = None):
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    model.record_training_settings(**SETTINGS)
    path = tmp_path / "model"
    model.save_pretrained(path)
    if readme is not None:
        (path / "README.md").write_text(readme)
    return path


def test_update_model_card_creates_then_replaces(tmp_path, tokenizer):
    path = _saved_gaussian(tmp_path, tokenizer)
    update_model_card(path, {"accuracy": 0.7, "brier": 0.2}, dataset_type="me/prefs", dataset_split="test")
    update_model_card(path, {"accuracy": 0.75}, dataset_type="me/prefs", dataset_split="test")
    update_model_card(path, {"accuracy": 0.6}, dataset_type="me/other", dataset_split="test")
    loaded = ModelCard.load(path / "README.md")
    assert _metrics(loaded) == {
        ("me/prefs", "test", "Brier score"): 0.2,
        ("me/prefs", "test", "Pairwise accuracy"): 0.75,
        ("me/other", "test", "Pairwise accuracy"): 0.6,
    }
    assert (
        loaded.text.count(EVALUATION_START) == 1 and "| me/prefs | test | Pairwise accuracy | 0.7500 |" in loaded.text
    )
    assert "τ_1 = -0.6" in loaded.text  # the created card comes from the saved config

    rewardbench = rewardbench_scores(
        {"alpacaeval-easy": {"accuracy": 1.0, "count": 2}, "math-prm": {"accuracy": 0.5, "count": 2}}
    )
    update_model_card(path, rewardbench, dataset_type="allenai/reward-bench", dataset_split="filtered")
    names = {k[2] for k in _metrics(ModelCard.load(path / "README.md")) if k[0] == "allenai/reward-bench"}
    assert names == {"RewardBench Score", "RewardBench Chat", "RewardBench Reasoning"}
    assert len(rewardbench_eval_results(rewardbench)) == 3


def test_update_foreign_card_appends_section(tmp_path, tokenizer):
    path = _saved_gaussian(
        tmp_path, tokenizer, readme="---\nlicense: mit\n---\n\n# Someone's card\n\n## Citations\n\nx\n"
    )
    card = update_model_card(path, {"ece": 0.1}, dataset_type="me/prefs", dataset_split="test")
    assert card.data.license == "mit" and card.data.model_name == "model"
    assert card.text.index(EVALUATION_START) < card.text.index("## Citations")


def _train_data(n=8):
    return Dataset.from_dict(
        {
            "prompt": ["the quick brown fox"] * n,
            "chosen": ["a helpful answer step by step"] * n,
            "rejected": ["this is rude and wrong"] * n,
            "soft_label": [0.8] * n,
            "chosen_anchor": [2] * n,
            "rejected_anchor": [0] * n,
        }
    )


def _trainer(tmp_path, tokenizer, **overrides):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    config = dict(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=4,
        report_to="none",
        save_strategy="no",
        anchor_thresholds=[-0.5, 0.5],
        learning_rate=1e-3,
        logging_steps=1,
        bf16=False,
        gradient_checkpointing=False,
    )
    config.update(overrides)
    return AnchorGaussianRewardTrainer(
        model=model,
        args=AnchorGaussianRewardConfig(**config),
        train_dataset=_train_data(),
        eval_dataset=_train_data(4),
        processing_class=tokenizer,
    )


def test_trainer_writes_card_at_checkpoints_and_with_eval_results(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, save_strategy="steps", save_steps=2)
    trainer.train()
    card = ModelCard.load(tmp_path / "run" / "README.md")  # written by TRL's `_save_checkpoint` hook
    assert card.data.pipeline_tag == "text-classification" and "trl-anchor" in card.data.tags
    assert "| anchor_lambda | 0.1 |" in card.text and "τ_1 = -0.5" in card.text

    trainer.evaluate()
    trainer.create_model_card(license="mit", dataset_name="me/prefs", tags="extra")
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.data.license == "mit" and card.data.datasets == ["me/prefs"] and "extra" in card.data.tags
    metrics = _metrics(card)
    assert {k[2] for k in metrics} >= {"Pairwise accuracy", "Brier score", "Anchor accuracy", "Mean σ"}
    assert metrics[("me/prefs", "eval", "Brier score")] == pytest.approx(
        trainer.state.log_history[-1]["eval_brier"], abs=1e-6
    )
    # σ's spread over the eval responses: the std of the σ of every eval response, recomputed from the eval rewards.
    rewards = trainer.eval_rewards
    sigma = np.sqrt(np.concatenate([rewards["chosen_variance"], rewards["rejected_variance"]]))
    assert metrics[("me/prefs", "eval", "σ spread (std across responses)")] == pytest.approx(sigma.std(), abs=1e-6)


def test_push_to_hub_writes_card(tmp_path, tokenizer, monkeypatch):
    import transformers.trainer

    uploads = []
    fake_api = SimpleNamespace(
        create_repo=lambda repo_name, **kw: SimpleNamespace(repo_id=f"me/{repo_name}"),
        upload_folder=lambda **kw: uploads.append(kw),
    )
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: fake_api)
    trainer = _trainer(tmp_path, tokenizer)
    trainer.push_to_hub(license="cc-by-4.0", finetuned_from="openai-community/gpt2", dataset_name="me/prefs")
    assert uploads and uploads[0]["repo_id"] == "me/run"
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.data.license == "cc-by-4.0" and card.data.base_model == "openai-community/gpt2"
    assert 'from_pretrained("me/run")' in card.text


def test_license_from_local_base_model(tmp_path, tokenizer, minilm_dir):
    torch.manual_seed(0)
    trainer = _trainer(tmp_path, tokenizer)
    trainer.model.config._name_or_path = str(minilm_dir)  # as if loaded from the packaged MiniLM
    trainer.create_model_card()
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.data.license == "apache-2.0" and card.data.base_model is None


def test_bt_arm_card(tmp_path, tokenizer):
    model = AutoModelForSequenceClassification.from_config(tiny_gpt2_config(tokenizer))
    args = AnchorGaussianRewardConfig(
        output_dir=str(tmp_path / "bt"), reward_type="bt", report_to="none", max_steps=1, bf16=False
    )
    trainer = AnchorGaussianRewardTrainer(
        model=model,
        args=args,
        train_dataset=_train_data().remove_columns(["chosen_anchor", "rejected_anchor"]),
        processing_class=tokenizer,
    )
    trainer.create_model_card(license="mit")
    card = ModelCard.load(tmp_path / "bt" / "README.md")
    assert "Bradley–Terry reward model" in card.text and "anchor_lambda" not in card.text


def test_model_index_holds_only_hub_dataset_ids(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="must be a Hub dataset id.*'evaluation split'"):
        eval_results_from_metrics({"accuracy": 0.8}, "evaluation split")
    path = _saved_gaussian(tmp_path, tokenizer)
    for name in ("test.jsonl", "trl_anchor.data.synthetic"):
        update_model_card(path, {"accuracy": 0.7, "sigma_partial_vote_spread": 0.12}, dataset_type=name)
    update_model_card(path, {"accuracy": 0.9}, dataset_type="me/prefs", dataset_split="test")
    card = ModelCard.load(path / "README.md")
    assert _metrics(card) == {("me/prefs", "test", "Pairwise accuracy"): 0.9}
    assert all(r.dataset_type == "me/prefs" for r in card.data.eval_results)
    assert "| test.jsonl (local) | — | Pairwise accuracy | 0.7000 |" in card.text
    partial = "| trl_anchor.data.synthetic (local) | — | Partial Spearman ρ(σ, vote spread \\| crowd mean) | 0.1200 |"
    assert partial in card.text
    update_model_card(path, {"accuracy": 0.75}, dataset_type="test.jsonl")  # replaces the local row
    card = ModelCard.load(path / "README.md")
    assert "| test.jsonl (local) | — | Pairwise accuracy | 0.7500 |" in card.text
    assert "| test.jsonl (local) | — | Pairwise accuracy | 0.7000 |" not in card.text


def test_trainer_card_of_local_data_keeps_results_out_of_model_index(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer)
    trainer.evaluate()
    trainer.create_model_card(license="mit")  # no dataset id: the evaluation split of local data
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.data.eval_results is None
    assert "| evaluation split (local) | eval | Pairwise accuracy |" in card.text


def test_card_snippets_score_the_text_the_model_trained_on(tmp_path, tokenizer):
    import re

    from trl_anchor.data import CaptionContestData
    from trl_anchor.data._common import FilterReport
    from trl_anchor.data.caption_contest_files import ContestTable
    from trl_anchor.rewards.scoring import tokenize_response

    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)).eval()
    model.record_training_settings(**SETTINGS)
    path = tmp_path / "model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    card = build_model_card(model_name="m", settings=SETTINGS, hub_model_id=str(path), license="mit")
    transformers_snippet, anchor_snippet = re.findall(r"```python\n(.*?)```", card.text, re.S)[:2]
    # A text adapter trains on prompt + "\n" + response (+ EOS): written out by hand.
    text = "Tell me a joke.\nWhy did the chicken cross the road?"
    expected = tokenizer(text + tokenizer.eos_token, return_tensors="pt")
    with torch.no_grad():
        mu = model(**expected).logits[0, 0].item()
    namespace = {}
    exec(transformers_snippet, namespace)  # noqa: S102 - the card's own usage code
    assert namespace["mu"] == pytest.approx(mu, abs=1e-5)
    exec(anchor_snippet, namespace)  # noqa: S102
    assert namespace["scores"].mean[0] == pytest.approx(mu, abs=1e-5)
    # ... and that is the text the caption adapter's text mode gives the trainer.
    caption = "Why did the chicken cross the road?"
    table = ContestTable(700, [caption, "b"], torch.tensor([[1, 1, 1], [3, 0, 0]]).numpy(), FilterReport("toy"))
    data = CaptionContestData({700: table}, {700: "Tell me a joke."})
    row = data.pairs(pairs_per_contest=1, conversational=False)[0]
    side = "chosen" if row["chosen"] == caption else "rejected"
    assert tokenize_response(tokenizer, row[side], row["prompt"]) == expected["input_ids"][0].tolist()


def test_card_states_anchor_groups(tmp_path):
    settings = {**SETTINGS, "anchor_group_column": "contest", "anchor_groups": 78, "anchor_group_variance": 0.6812}
    text = build_model_card(model_name="grouped-rm", settings=settings).text
    assert "**Anchor groups:** `contest`, 78 train groups" in text and "s² = 0.6812" in text
    assert "Anchor groups" not in build_model_card(model_name="plain-rm", settings=SETTINGS).text


def test_card_states_the_mean_offset_of_a_head_without_bias(tmp_path):
    settings = {**SETTINGS, "anchor_mean_offset": -1.2345}
    text = build_model_card(model_name="decoder-rm", settings=settings).text
    assert "**Mean offset:**" in text and "μ₀ = -1.234" in text
    plain = build_model_card(model_name="plain-rm", settings={**SETTINGS, "anchor_mean_offset": 0.0}).text
    assert "Mean offset" not in plain
