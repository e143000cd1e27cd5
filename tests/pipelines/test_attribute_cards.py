"""Model cards of multi-attribute reward models list attributes, weights, thresholds and metrics."""

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
