"""`trl-anchor multi-attribute-demo` runs end to end (tiny sizes) and writes the side-by-side table, JSON and cards."""

import json

import pytest
from transformers import AutoModelForSequenceClassification

from trl_anchor.cli import main as cli_main


@pytest.mark.slow
def test_multi_attribute_demo_smoke(tmp_path, minilm_dir):
    code = cli_main([
        "multi-attribute-demo", "--output_dir", str(tmp_path), "--model_name_or_path", str(minilm_dir),
        "--num_train", "48", "--num_test", "40", "--num_train_pairs", "8", "--num_test_pairs", "20",
        "--max_steps", "2", "--per_device_train_batch_size", "8",
    ])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"ordinal", "mse"}
    assert "helpfulness/sigma_spearman" in results["ordinal"] and "helpfulness/sigma_spearman" not in results["mse"]
    assert "pairs/soft_label_nll" in results["ordinal"] and "pairs/accuracy" in results["mse"]
    assert "ordinal_nll" in " ".join(results["mse"])  # the MSE arm's NLL uses its constant residual σ
    table = (tmp_path / "results.md").read_text()
    assert table.startswith("| attribute (ordinal / mse) |") and "| verbosity |" in table
    for arm in ("ordinal", "mse"):
        assert AutoModelForSequenceClassification.from_pretrained(tmp_path / arm / "model").config.num_labels == 5
        assert "| helpfulness | 0.65 |" in (tmp_path / arm / "model" / "README.md").read_text()
