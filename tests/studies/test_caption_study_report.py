"""The caption study's report: the committed report is exactly what `render_report` makes of its `results.json`."""

import json
from pathlib import Path

from trl_anchor.studies.caption_study import render_report

REPORT = Path(__file__).resolve().parents[2] / "reports" / "caption_study"


def test_committed_report_renders_from_its_results():
    results = json.loads((REPORT / "results.json").read_text())
    assert render_report(results) == (REPORT / "README.md").read_text()
