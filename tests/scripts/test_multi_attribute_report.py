"""The committed multi-attribute table is the one `comparison_table` builds from the committed results file, and the
README shows exactly that table."""

import json
from pathlib import Path

from trl_anchor.pipelines.multi_attribute_evaluation import comparison_table
from trl_anchor.scripts.multi_attribute_demo import MultiAttributeDemoArguments
from trl_anchor.trainer.multi_attribute_config import HELPSTEER2_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "multi_attribute"


def test_table_is_built_from_the_results_file_and_shown_in_the_readme():
    summary = json.loads((REPORT / "results.json").read_text())
    table = comparison_table(summary["results"], list(HELPSTEER2_ATTRIBUTES))
    assert (REPORT / "results.md").read_text() == table + "\n"
    assert table in (ROOT / "README.md").read_text()
    assert table in (REPORT / "README.md").read_text()


def test_results_come_from_the_demo_defaults():
    args = json.loads((REPORT / "results.json").read_text())["args"]
    defaults = vars(MultiAttributeDemoArguments())
    args.pop("output_dir"), defaults.pop("output_dir")
    assert args == defaults
