"""The findings of the caption study in words, and the oracle references they compare with: each sentence derived from
the numbers of `results`. A difference
between arms, paired over test contests, is called clear when its two-sided t-test over the contests (n − 1 degrees of
freedom) has p < 0.05; the verdict table also gives the Holm-adjusted call over all its comparisons."""

from collections.abc import Sequence
from typing import Any

import numpy as np

from .ceiling import RANKING_GRID
from .config import ARM_LABELS, ARMS, DIGITS, METRICS, ablation_runs
from .plots import CEILING_FIGURE
from .statistics import holm, t_critical, t_test

LEVEL = 0.05


def _comparisons(results: dict[str, Any]) -> list[tuple[str, str, dict]]:
    return [
        (comparison.split(" - ")[1], metric, diff)
        for comparison, diffs in results["differences"].items()
        for metric, diff in diffs.items()
        if diff is not None
    ]


def verdict_table(results: dict[str, Any]) -> list[str]:
    """One row per metric comparing the anchored arm with each baseline, paired over test contests: the t-test's
    p-value, the call at 5%, and the call after Holm's adjustment over every row of the table (multiplicity)."""
    rows = _comparisons(results)
    if not rows:
        return ["(Paired differences need at least two evaluated test contests.)"]
    p_values = {f"{ref}/{metric}": t_test(diff) for ref, metric, diff in rows}
    adjusted = holm(p_values)
    lines = [
        "| vs | metric | anchored − reference (mean ± SE over contests) | p (t-test) | at 5% | after Holm |",
        "|---|---|---|---|---|---|",
    ]
    for reference, metric, diff in rows:
        key = f"{reference}/{metric}"
        lines.append(
            f"| {ARM_LABELS[reference]} | {METRICS[metric][0]} | {diff['mean']:+.4f} ± {diff['se']:.4f} (n ="
            f" {diff['n']}) | {p_values[key]:.3f} | {_call(diff, metric, p_values[key])} |"
            f" {_call(diff, metric, adjusted[key])} |"
        )
    expected = LEVEL * len(rows)
    lines += [
        "",
        (
            f"Multiplicity: the table makes {len(rows)} comparisons; at 5% each, about {expected:.1f} of them would be"
            " called clear by chance alone even if the arms did not differ. The Holm column keeps the chance of any"
            ' false call in the whole table at 5%; read single "clear" calls that do not survive it as weak.'
        ),
    ]
    return lines


def _call(diff: dict, metric: str, p_value: float | None) -> str:
    if p_value is None or p_value >= LEVEL:
        return "no clear difference"
    better = (diff["mean"] > 0) == (METRICS[metric][1] == "higher")
    return "anchored **better**" if better else "anchored **worse**"


def _verdict(results: dict[str, Any], reference: str, metric: str) -> str | None:
    """`better` / `worse` / `no clear difference` of the anchored arm against `reference` (t-test at 5%)."""
    diff = results["differences"][f"gaussian+anchors - {reference}"].get(metric)
    if diff is None:
        return None
    p_value = t_test(diff)
    if p_value is None or p_value >= LEVEL:
        return "no clear difference"
    return "better" if (diff["mean"] > 0) == (METRICS[metric][1] == "higher") else "worse"


def _diff_text(results: dict[str, Any], reference: str, metric: str) -> str:
    """`vs reference +x ± se (verdict)` for the findings."""
    diff = results["differences"][f"gaussian+anchors - {reference}"].get(metric)
    if diff is None:
        return f"vs {ARM_LABELS[reference]}: n/a"
    verdict = _verdict(results, reference, metric)
    verdict = verdict if verdict == "no clear difference" else f"anchored {verdict}"
    digits = DIGITS.get(metric, 3)
    return f"vs {ARM_LABELS[reference]} {diff['mean']:+.{digits}f} ± {diff['se']:.{digits}f} ({verdict})"


def budget_text(results: dict[str, Any]) -> str:
    """The training budget of the run, from its own configuration and logs."""
    config = results["config"]
    steps = sorted({run["training"]["steps"] for run in results["runs"].values()})
    length = (
        f"{config['max_steps']} steps (max_steps)"
        if config["max_steps"] > 0
        else f"{config['num_train_epochs']:g} epoch{'s' if config['num_train_epochs'] != 1 else ''}"
        f" ({', '.join(map(str, steps))} steps)"
    )
    return f"{results['data']['train_pairs']} `{config['train_strategy']}` train pairs and {length} per run"


def _mean(stats: dict | None) -> float:
    return float("nan") if not stats or stats.get("mean") is None else stats["mean"]


def findings(results: dict[str, Any]) -> list[str]:
    """Plain-language findings, each derived from the numbers (differences judged by a t-test over contests)."""
    summary, data, runs = results["summary"], results["data"], results["runs"]
    props = data["test_properties"]
    anchored = summary["gaussian+anchors"]

    def by_arm(metric: str, digits: int = 3, arms: Sequence[str] = ARMS) -> str:
        return ", ".join(f"{ARM_LABELS[a]} {_mean(summary[a].get(metric)):.{digits}f}" for a in arms)

    best_tau = max(_mean(summary[a]["kendall_tau"]) for a in ARMS)
    strength = "barely above chance" if best_tau < 0.1 else "weakly" if best_tau < 0.3 else "clearly"
    lines = [
        (
            f"- **Ranking held-out captions.** At this budget every arm ranks captions {strength}: Kendall τ-b of μ"
            f" with the crowd mean {by_arm('kendall_tau')}; accuracy on clearly separated pairs"
            f" {by_arm('accuracy_clear')}; top-10 vs rank ~1000 AUC {by_arm('top_vs_far_auc')}. Anchored − reference,"
            f" paired over contests: τ {_diff_text(results, 'trl_bt', 'kendall_tau')},"
            f" {_diff_text(results, 'bt', 'kendall_tau')},"
            f" {_diff_text(results, 'gaussian', 'kendall_tau')}; clear-pair accuracy"
            f" {_diff_text(results, 'bt', 'accuracy_clear')}; top-vs-1000 AUC"
            f" {_diff_text(results, 'bt', 'top_vs_far_auc')}."
        ),
    ]
    coin = float(np.log(2))
    above = [ARM_LABELS[a] for a in ARMS if _mean(summary[a]["soft_ce"]) > coin]
    lines.append(
        "- **Calibration on random pairs.** Their soft labels sit close to ½ (mean |p − ½| ="
        f" {_mean(props.get('label_abs_margin')):.3f}), so the coin flip's ln 2 = {coin:.4f} is hard to beat; the"
        f" floor (the labels' entropy) is {_mean(props.get('soft_label_entropy')):.4f}. Soft CE:"
        f" {by_arm('soft_ce', 4)}"
        + (
            f"; {', '.join(above)} {'is' if len(above) == 1 else 'are'} worse than always predicting ½"
            if above
            else ""
        )
        + f". Mean |P − ½| of the predictions: {by_arm('mean_abs_margin')}. The anchored arm's soft CE "
        f"{_diff_text(results, 'bt', 'soft_ce')} and Brier {_diff_text(results, 'bt', 'brier')} reflect how close to ½"
        " each arm's probabilities stay more than a better ranking"
        + (
            f" (the arms trained on clearly separated pairs, whose soft labels (mean"
            f" {data['train_soft_label_mean']:.3f}) are farther from ½)."
            if results["config"]["train_strategy"] == "clearly_separated"
            else "."
        )
    )
    lines.append(
        "- **Vote likelihood (what the anchors add).** The anchored model predicts each held-out caption's vote"
        f" distribution with {_mean(anchored.get('vote_nll')):.4f} nats per vote, against"
        f" {data['constant_vote_nll']:.4f} for the best single distribution of the train captions"
        f" ({_constant_gain_text(data)}); {_within_text(anchored)}{_groups_text(results)}; without"
        f" anchors μ and σ have no unit, and the no-anchor arm's {_mean(summary['gaussian'].get('vote_nll')):.4f}"
        " shows it."
        + (
            ""
            if _constant_gain_text(data).endswith("clearly better")
            else " At this budget the anchored μ and σ mostly learned the overall vote distribution, not which "
            f"captions are funnier (its pair probabilities stay within {_mean(anchored.get('mean_abs_margin')):.3f} of"
            " ½ on average)."
        )
    )
    partial = anchored.get("sigma_partial_spread") or {}
    p_mean, p_se = _mean(partial), partial.get("se") or 0.0
    critical = t_critical(partial.get("n", 0))
    if not abs(p_mean) > critical * p_se:
        sigma_verdict = "indistinguishable from zero"
    else:
        sigma_verdict = "positive" if p_mean > 0 else "negative"
    at_level = f"at 5% (t-test over {partial.get('n', 0)} contests)"
    lines.append(
        "- **Does σ carry disagreement beyond μ?** Not detectably here. The vote spread is almost a function of the"
        f" crowd mean (Spearman {_mean(props.get('spread_mean_spearman')):.3f}), so the raw σ–spread correlations"
        f" ({by_arm('sigma_spearman_spread', arms=ARMS[2:])}) mostly reflect how each arm's σ moves with its μ."
        f" Controlling for the crowd mean, the anchored arm's partial rank correlation is {p_mean:+.3f} ± {p_se:.3f},"
        f" {sigma_verdict} {at_level} (cubic control:"
        f" {_mean(anchored.get('sigma_partial_spread_cubic')):+.3f}); the no-anchor arm's is"
        f" {_mean(summary['gaussian'].get('sigma_partial_spread')):+.3f}."
        if sigma_verdict == "indistinguishable from zero"
        else f"- **Does σ carry disagreement beyond μ?** Controlling for the crowd mean, the anchored arm's partial "
        f"rank correlation of σ with the vote spread is {p_mean:+.3f} ± {p_se:.3f}, {sigma_verdict} {at_level}"
        f" (cubic control: {_mean(anchored.get('sigma_partial_spread_cubic')):+.3f}; no-anchor arm:"
        f" {_mean(summary['gaussian'].get('sigma_partial_spread')):+.3f}). The spread is almost a function of the mean"
        f" (Spearman {_mean(props.get('spread_mean_spearman')):.3f}), so only this partial correlation speaks to it."
    )
    lines.append(_sigma_scores_finding(results, by_arm))
    if data.get("vote_ceiling"):
        lines.append(_ceiling_finding(data["vote_ceiling"], anchored))
    ablation = [runs[name]["test"]["summary"] for name in dict.fromkeys(n for n, _, _ in ablation_runs(results))]

    def span(metric: str, digits: int = 3) -> str:
        values = [_mean(a.get(metric)) for a in ablation]
        ses = [(a.get(metric) or {}).get("se") or 0.0 for a in ablation]
        return f"{min(values):.{digits}f}–{max(values):.{digits}f} (SE ≈ {np.mean(ses):.{digits}f})"

    lines.append(
        f"- **Ablations.** Over λ ∈ {{{', '.join(f'{x:g}' for x in results['config']['anchor_lambdas'])}}} and anchor"
        f" fractions {{{', '.join(f'{x:g}' for x in results['config']['anchor_fractions'])}, 1}}: Kendall τ"
        f" {span('kendall_tau')}, clear-pair accuracy {span('accuracy_clear')}, top-vs-1000 AUC"
        f" {span('top_vs_far_auc')}, partial σ correlation {span('sigma_partial_spread')}, vote NLL"
        f" {span('vote_nll', 4)}. Ranges within about {t_critical(anchored['kendall_tau']['n']):.1f} standard errors"
        " (the t quantile for these contests) are not evidence of an effect."
    )
    ranking = ("kendall_tau", "accuracy_clear", "top_vs_far_auc")
    adjusted = holm({f"{ref}/{m}": t_test(diff) for ref, m, diff in _comparisons(results)})
    calls: dict[str, list[str]] = {"better": [], "worse": []}
    survive = {"better": False, "worse": False}
    for ref in ARMS[:-1]:
        for metric in ranking:
            verdict = _verdict(results, ref, metric)
            if verdict in calls:
                calls[verdict].append(f"{METRICS[metric][0]} vs {ARM_LABELS[ref]}")
                survive[verdict] |= (adjusted.get(f"{ref}/{metric}") or 1.0) < LEVEL

    def listed(kind: str) -> str:
        holm_note = "also" if survive[kind] else "not"
        return f"{kind} at 5%: {', '.join(calls[kind])} ({holm_note} after Holm's adjustment)"

    if calls["better"] and not calls["worse"]:
        bottom = f"the anchored arm ranks held-out captions better than a baseline on some metric ({listed('better')})"
    elif calls["better"]:
        bottom = f"the ranking comparison is mixed ({listed('better')}; {listed('worse')})"
    else:
        bottom = (
            "this run does **not** show anchors improving reward modeling of held-out contests (no ranking metric is"
            " better at 5%" + (f"; {listed('worse')}" if calls["worse"] else "") + ")"
        )
    quality = "barely above chance" if best_tau < 0.1 else "weak" if best_tau < 0.3 else "clear"
    lines.append(
        f"- **Bottom line.** With {budget_text(results)}, {bottom}. The best arm's ranking of held-out captions is"
        f" {quality} (Kendall τ {best_tau:.3f}), which bounds what this run can show;"
        " `--train_pairs_per_contest` and `--num_train_epochs` scale the study up with the same command."
    )
    return lines


def _sigma_scores_finding(results: dict[str, Any], by_arm) -> str:
    """Whether σ varies across captions, and what the scores that use it (expected vote, risk-aware best-of-N) do."""
    summary, config = results["summary"], results["config"]
    anchored = summary["gaussian+anchors"]
    if anchored.get("bon_gain_mean") is None:  # a study run before these metrics existed
        return "- **Scores that use σ.** Not measured by this run."
    gaussian = ("gaussian", "gaussian+anchors")
    return (
        "- **Scores that use σ.** σ's spread across a contest's captions (std / mean):"
        f" {by_arm('sigma_relative_spread', arms=gaussian)}. Kendall τ-b of the expected vote Σ_j j·π_j(μ, σ, τ)"
        f" with the crowd mean: {by_arm('kendall_tau_expected_vote', arms=gaussian)} (μ alone:"
        f" {by_arm('kendall_tau', arms=gaussian)}). Best-of-{config['bon_n']} gain (0 random, 1 oracle) with μ:"
        f" {by_arm('bon_gain_mean')}; with the 10% quantile: {by_arm('bon_gain_quantile', arms=gaussian)}; with the"
        f" expected vote: {by_arm('bon_gain_expected_vote', arms=gaussian)}. Anchored − no-anchor Gaussian, paired"
        f" over contests: expected-vote τ {_diff_text(results, 'gaussian', 'kendall_tau_expected_vote')},"
        f" expected-vote best-of-N {_diff_text(results, 'gaussian', 'bon_gain_expected_vote')}."
    )


def _constant_gain_text(data: dict[str, Any]) -> str:
    """The anchored arm's vote NLL against the constant reference, paired over test contests (t-test at 5%)."""
    gain = data.get("vote_nll_gain_over_constant")
    if not gain:
        return "no paired comparison in this run"
    return f"paired over contests {_gain_text(gain)}"


def _gain_text(gain: dict[str, Any]) -> str:
    """A gain in nats over contests `{"mean", "se", "n"}` with its t-test against 0 at 5%."""
    p_value = t_test(gain)
    verdict = (
        "clearly better"
        if p_value is not None and p_value < LEVEL and gain["mean"] > 0
        else ("clearly worse" if p_value is not None and p_value < LEVEL else "no clear difference")
    )
    se = "n/a" if gain.get("se") is None else f"{gain['se']:.4f}"
    return f"{gain['mean']:+.4f} ± {se} nats in the model's favour: {verdict}"


def _groups_text(results: dict[str, Any]) -> str:
    """How the anchored runs treat each contest's base rate (`anchor_group_column`), with the offsets' spread."""
    column = results["config"].get("anchor_group_column")
    if column is None:
        return (
            ". The anchors are absolute (no `anchor_group_column`): μ also carries each train contest's base rate, so"
            " on a new contest it guesses one from the description"
        )
    variance = results["runs"][results["headline"]["gaussian+anchors"]]["training"].get("anchor_group_variance")
    spread = "" if variance is None else f" (std {np.sqrt(variance):.2f} on the latent scale that τ fixes)"
    return (
        f". The anchors are relative to each train contest's base rate (`anchor_group_column={column}`): every train"
        f" contest's crowd gets a fitted offset{spread}, μ learns differences within contests, and a test contest's"
        " votes are predicted from N(μ, σ² + s²), s² the offsets' variance"
    )


def _within_text(anchored: dict[str, Any]) -> str:
    """What the anchored arm's caption-to-caption differences add to its vote likelihood within a contest."""
    within = anchored.get("vote_nll_within_gain")
    if not within or within.get("mean") is None:
        return "no within-contest decomposition in this run"
    return (
        "its differences between the captions of one contest, against predicting every caption of the contest the"
        f" model's own contest-average distribution, add {_gain_text(within)} (the rest of the difference to the"
        " constant is the contest-average prediction: what the model guesses of a new contest's base rate)"
    )


def _ceiling_finding(ceiling: dict[str, Any], anchored: dict[str, Any]) -> str:
    """What oracles fitted to the held-out votes gain from each caption's μ and, on top, its σ (`ceiling.py`)."""
    test, validation = ceiling["test"], ceiling["validation"]
    summary = test["summary"]
    std_test, std_validation = test["combined"]["std"], validation["combined"]["std"]
    detected = std_test["p_value"] < LEVEL
    return (
        "- **What the votes allow (oracles fitted to the test votes).** A caption's (μ, σ) and its three vote shares"
        " determine each other, so oracles fitted to the held-out votes bound what μ and σ can add. Vote NLL: the"
        f" train captions' distribution {_mean(summary['constant_nll']):.4f}, each contest's own distribution"
        f" {_mean(summary['contest_average_nll']):.4f}, each caption's μ with one σ per contest"
        f" {_mean(summary['oracle_mean_nll']):.4f}, each caption's μ and σ {_mean(summary['saturated_nll']):.4f}."
        " Beyond what fitting the extra parameters to noise gains, knowing every caption's μ is worth"
        f" {_lr_text(test['combined']['mean'])}, and its σ on top {_lr_text(std_test)} (validation contests:"
        f" {_lr_text(std_validation)})."
        + (
            f" So the crowd's disagreement does differ between captions at a given mean, but it is worth about"
            f" {test['combined']['mean']['gain_per_vote'] / std_test['gain_per_vote']:.0f} times less than the mean"
            " on these votes: a flat σ is close to what the data supports."
            if detected and std_test["gain_per_vote"] > 0
            else " So these votes show no disagreement beyond the mean that σ could carry: a flat σ is what the data"
            " supports."
        )
        + _ranking_limit_text(test, anchored)
    )


def _ranking_limit_text(test: dict[str, Any], anchored: dict[str, Any]) -> str:
    """The anchored arm's within-contest vote-NLL gain against what its own ranking quality allows."""
    limit, within = test["summary"].get("ranking_limited_gain"), anchored.get("vote_nll_within_gain")
    if not limit or not within or within.get("mean") is None:
        return ""
    diff = test.get("anchored_minus_ranking_limit")
    gap = "" if not diff else f"; paired difference {diff['mean']:+.4f} ± {diff['se']:.4f}"
    tau = _mean(anchored["kendall_tau"])
    grid = ", ".join(
        f"{_mean(test['summary'][f'ranking_gain_{t:g}']):+.4f} at τ = {t:g}"
        for t in RANKING_GRID
        if f"ranking_gain_{t:g}" in test["summary"]
    )
    return (
        " What limits the anchored arm's vote likelihood is how well μ ranks captions: μ that ranks each contest's"
        f" captions as well as the arm's does (its Kendall τ-b per contest, mean {tau:.3f}; the oracle μ plus noise),"
        f" calibrated on the test votes themselves, gains about {_cell_text(limit)} nats per vote within contests;"
        f" the arm gains {_cell_text(within)}{gap}. Gains well beyond noise need a better ranking: {grid}."
    )


def _cell_text(stats: dict[str, Any]) -> str:
    return f"{stats['mean']:+.4f} ± {stats['se']:.4f}" if stats.get("se") is not None else f"{stats['mean']:+.4f}"


def _lr_text(test: dict[str, Any]) -> str:
    """A combined likelihood-ratio test of `ceiling.vote_ceiling` in words."""
    p_value = _p_text(test["p_value"])
    p_value = p_value if p_value.startswith("<") else f"= {p_value}"
    return f"{test['gain_per_vote']:+.4f} nats per vote (χ² = {test['lr']:.0f} on {test['df']} df, p {p_value})"


def _p_text(p_value: float) -> str:
    # Below double precision's reach `chi2.sf` returns 0, which is not a probability anyone measured.
    return f"{p_value:.2g}" if p_value >= 1e-16 else "< 1e-16"


def ceiling_section(results: dict[str, Any]) -> list[str]:
    """The oracle references of the vote likelihood per split (mean ± SE over contests) and the combined tests."""
    ceiling = results["data"].get("vote_ceiling")
    if not ceiling:
        return []
    columns = {
        "constant_nll": "train captions' distribution",
        "contest_average_nll": "contest's own distribution",
        "oracle_mean_nll": "caption μ, one σ",
        "saturated_nll": "caption μ and σ",
        "shared_std": "one σ per contest",
    }
    lines = [
        "## What the votes allow",
        "",
        "Oracles fitted to the evaluated captions' own votes (`trl_anchor/studies/caption_study/ceiling.py`), in the"
        " vote NLL's unit (nats per vote, averaged over captions; mean ± SE over contests); no model scored on these"
        " contests can do better than the oracle with the same parameters. σ is in the unit that τ ="
        f" {results['config']['anchor_thresholds']} fixes.",
        "",
        "| split | " + " | ".join(columns.values()) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for split, ceil in ceiling.items():
        cells = " | ".join(_stat_cell(ceil["summary"][key]) for key in columns)
        lines.append(f"| {split} | {cells} |")
    lines += [
        "",
        "Likelihood-ratio tests over all votes of a split (contests add up): does each caption's μ explain the votes"
        " better than the contest's distribution, and does each caption's σ explain them better than one σ per"
        " contest? The gain per vote subtracts what the extra parameters gain from noise on average ((χ² − df) /"
        " (2 · votes)). The p-values are asymptotic (χ² with df = captions − 1 per contest); captions without votes"
        " in a category sit on the boundary of the parameter space, which makes them approximate.",
        "",
        "| split | caption μ: gain per vote | χ² (df) | p | caption σ: gain per vote | χ² (df) | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, ceil in ceiling.items():
        cells = [
            f"{t['gain_per_vote']:+.4f} | {t['lr']:.0f} ({t['df']}) | {_p_text(t['p_value'])}"
            for t in (ceil["combined"]["mean"], ceil["combined"]["std"])
        ]
        lines.append(f"| {split} | {' | '.join(cells)} |")
    return lines + _ranking_limit_table(ceiling["test"])


def _ranking_limit_table(test: dict[str, Any]) -> list[str]:
    """The within-contest vote-NLL gain that rankings of each quality allow (`ceiling.ranking_limited_gains`)."""
    summary = test["summary"]
    rows = [(f"{t:g}", summary[f"ranking_gain_{t:g}"]) for t in RANKING_GRID if f"ranking_gain_{t:g}" in summary]
    if not rows:
        return []
    lines = [
        "",
        "How much of the μ oracle's gain a ranking of a given quality can reach: the oracle μ plus Gaussian noise"
        " scaled until its Kendall τ-b with the crowd mean is τ (16 noise draws per contest), then calibrated as well"
        " as the test votes allow (μ = a + b·noisy μ and one σ, fitted to them). It models a ranking's errors as"
        " noise and is fitted on the votes it is scored on, so it is a benchmark for a model ranking that well, not"
        " a proof of a bound. Gain in vote NLL over the contest's own distribution, test contests, mean ± SE.",
        "",
        "| Kendall τ-b of μ | within-contest gain (nats per vote) |",
        "|---|---|",
        *(f"| {tau} | {_cell_text(stats)} |" for tau, stats in rows),
        f"| the anchored arm's, per contest | {_cell_text(summary['ranking_limited_gain'])} |",
        "",
        f"![ranking limit]({CEILING_FIGURE})",
    ]
    return lines


def _stat_cell(stats: dict[str, Any]) -> str:
    return f"{stats['mean']:.4f} ± {stats['se']:.4f}" if stats.get("se") is not None else f"{stats['mean']:.4f}"
