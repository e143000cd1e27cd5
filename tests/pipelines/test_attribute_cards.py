"""Model cards of multi-attribute reward models list attributes, weights, thresholds and metrics."""

import pytest
from huggingface_hub import ModelCard

from trl_anchor.pipelines.attribute_cards import build_attribute_model_card

SETTINGS = {
    "attributes": ["helpfulness", "correctness", "coherence", "complexity", "verbosity"],
    "attribute_weights": [0.65, 0.8, 0.45, 0.55, -0.4],
    "attribute_thresholds": [[0.5, 1.5, 2.5, 3.5]] * 5,
    "loss_type": "ordinal",
}


def test_card_lists_attributes_weights_and_metrics(tmp_path):
    metrics = {"helpfulness/spearman": 0.81234, "verbosity/sigma_spearman": 0.5, "pairs/accuracy": 0.9,
               "coherence/ece": float("nan")}
    card = build_attribute_model_card("hs2-rm", SETTINGS, metrics=metrics, dataset_name="nvidia/HelpSteer2")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.datasets == ["nvidia/HelpSteer2"] and loaded.data.pipeline_tag == "text-classification"
    names = {r.metric_name: r.metric_value for r in loaded.data.eval_results}
    assert names == {"helpfulness: Spearman ρ(μ, rating)": 0.81234, "verbosity: Spearman ρ(σ, annotator spread)": 0.5,
                     "pairs: combined-reward pair accuracy": 0.9}  # NaN skipped
    text = loaded.text
    assert "| verbosity | -0.4 | 0.5, 1.5, 2.5, 3.5 |" in text and "| helpfulness | 0.65 |" in text
    assert "0.812" in text and "nvidia/Llama3-70B-SteerLM-RM" in text
    assert 'transform="quantile:0.1,weights:0.65:0.8:0.45:0.55:-0.4"' in text
    assert "σ_r² = Σ_a w_a² σ_a²" in text


def test_mse_card_has_no_sigma():
    card = build_attribute_model_card("mse-rm", {**SETTINGS, "loss_type": "mse"})
    assert "regression (MSE)" in card.text and "σ_r²" not in card.text


def test_update_attribute_model_card_adds_rewardbench_to_model_index(tmp_path):
    from transformers import GPT2Config

    from trl_anchor.pipelines.attribute_cards import update_attribute_model_card
    from trl_anchor.pipelines.rewardbench import rewardbench_scores

    build_attribute_model_card("hs2-rm", SETTINGS).save(tmp_path / "README.md")
    result = rewardbench_scores({"alpacaeval-easy": {"accuracy": 0.75, "count": 4},
                                 "mt-bench-easy": {"accuracy": 0.5, "count": 2}})
    card = update_attribute_model_card(tmp_path, result, dataset_type="allenai/reward-bench", dataset_split="filtered")
    loaded = ModelCard.load(tmp_path / "README.md")
    entries = {r.metric_name: (r.dataset_type, r.dataset_split, r.metric_value) for r in loaded.data.eval_results}
    chat = (100 * 0.75 + 28 * 0.5) / 128  # official example counts of the two subsets
    assert entries["RewardBench Chat"] == ("allenai/reward-bench", "filtered", pytest.approx(chat, abs=1e-6))
    assert "| helpfulness | 0.65 |" in loaded.text and "| RewardBench | filtered | RewardBench Chat |" in loaded.text
    assert loaded.text == card.text

    scalar = tmp_path / "scalar"
    GPT2Config(n_layer=1, n_head=1, n_embd=4, num_labels=1).save_pretrained(scalar)
    with pytest.raises(ValueError, match="is not a multi-attribute reward model"):
        update_attribute_model_card(scalar, {"helpfulness/spearman": 0.5}, dataset_type="nvidia/HelpSteer2")
