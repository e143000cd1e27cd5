"""The simulation's report: the committed report is what `render_report` makes of its `results.json`, and a report
of a subset of arms leaves the others out."""

import json
from pathlib import Path

from trl_anchor.studies.simulation import (
    EQUIVALENCE_FIGURE,
    ERROR_FIGURE,
    SimulationConfig,
    render_report,
    run_simulation,
)

REPORT = Path(__file__).resolve().parents[2] / "reports" / "simulation"


def test_committed_report_renders_from_its_results():
    results = json.loads((REPORT / "results.json").read_text())
    assert render_report(results) == (REPORT / "README.md").read_text()


def test_report_with_a_subset_of_arms_and_no_equivalent_worlds(tmp_path):
    config = SimulationConfig(
        quick=True, arms=["gaussian_2_anchor"], equivalent_scales=[1.0], output_dir=str(tmp_path)
    )
    results = run_simulation(config, show_progress=False)
    assert set(results["summary"]) == {"gaussian_2_anchor"} and results["equivalence"] == {}
    assert "two_anchor_sigma_within_10_percent" in results["checks"]
    report = (tmp_path / "README.md").read_text()
    assert "BT (soft labels)" not in report and "Equivalent worlds" not in report
    assert "--arms gaussian_2_anchor --equivalent_scales 1.0" in report
    assert (tmp_path / ERROR_FIGURE).exists() and not (tmp_path / EQUIVALENCE_FIGURE).exists()
