"""The findings of the caption study in words: each sentence derived from the numbers of `results`, differences
between arms judged at two standard errors."""

from collections.abc import Sequence
from typing import Any

import numpy as np

from .config import ARM_LABELS, ARMS, DIGITS, METRICS, ablation_runs


def verdict_table(results: dict[str, Any]) -> list[str]:
    """One sentence per metric comparing the anchored arm with each baseline, paired over test contests; a
    difference is called clear only beyond two standard errors."""
    lines = []
    for comparison, diffs in results["differences"].items():
        reference = comparison.split(" - ")[1]
        for metric, diff in diffs.items():
            if diff is None:
                continue
            label, better = METRICS[metric]
            sign = 1 if better == "higher" else -1
            if abs(diff["mean"]) <= 2 * diff["se"]:
                verdict = "no clear difference"
            elif sign * diff["mean"] > 0:
                verdict = "anchored **better**"
            else:
                verdict = "anchored **worse**"
            lines.append(
                f"| {ARM_LABELS[reference]} | {label} | {diff['mean']:+.4f} ± {diff['se']:.4f} | {verdict} |"
            )
    if not lines:
        return ["(Paired differences need at least two evaluated test contests.)"]
    return ["| vs | metric | anchored − reference (mean ± SE over contests) | at 2 SE |", "|---|---|---|---|"] + lines


def _verdict(results: dict[str, Any], reference: str, metric: str) -> str | None:
    """`better` / `worse` / `no clear difference` of the anchored arm against `reference` at two standard errors."""
    diff = results["differences"][f"gaussian+anchors - {reference}"].get(metric)
    if diff is None:
        return None
    if abs(diff["mean"]) <= 2 * diff["se"]:
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


def _mean(stats: dict | None) -> float:
    return float("nan") if not stats or stats.get("mean") is None else stats["mean"]


def findings(results: dict[str, Any]) -> list[str]:
    """Plain-language findings, each derived from the numbers (differences judged at two standard errors)."""
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
            f" paired over contests: τ {_diff_text(results, 'bt', 'kendall_tau')},"
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
        " each arm's probabilities stay more than a better ranking (the pairwise arms trained on clearly separated"
        " pairs, whose soft labels are farther from ½)."
    )
    lines.append(
        "- **Vote likelihood (what the anchors add).** The anchored model predicts each held-out caption's vote"
        f" distribution with {_mean(anchored.get('vote_nll')):.4f} nats per vote, against"
        f" {data['constant_vote_nll']:.4f} for the best single distribution of the train captions"
        f" ({'better' if _mean(anchored.get('vote_nll')) < data['constant_vote_nll'] else 'not better'}); without"
        f" anchors μ and σ have no unit, and the no-anchor arm's {_mean(summary['gaussian'].get('vote_nll')):.4f}"
        " shows it."
        + (
            ""
            if _mean(anchored.get("vote_nll")) < data["constant_vote_nll"]
            else " At this budget the anchored μ and σ mostly learned the overall vote distribution, not which "
            f"captions are funnier (its pair probabilities stay within {_mean(anchored.get('mean_abs_margin')):.3f} of"
            " ½ on average)."
        )
    )
    partial = anchored.get("sigma_partial_spread") or {}
    p_mean, p_se = _mean(partial), partial.get("se") or 0.0
    if abs(p_mean) <= 2 * p_se:
        sigma_verdict = "indistinguishable from zero"
    else:
        sigma_verdict = "positive" if p_mean > 0 else "negative"
    lines.append(
        "- **Does σ carry disagreement beyond μ?** Not detectably here. The vote spread is almost a function of the"
        f" crowd mean (Spearman {_mean(props.get('spread_mean_spearman')):.3f}), so the raw σ–spread correlations"
        f" ({by_arm('sigma_spearman_spread', arms=ARMS[1:])}) mostly reflect how each arm's σ moves with its μ."
        f" Controlling for the crowd mean, the anchored arm's partial rank correlation is {p_mean:+.3f} ± {p_se:.3f},"
        f" {sigma_verdict} at two standard errors (cubic control:"
        f" {_mean(anchored.get('sigma_partial_spread_cubic')):+.3f}); the no-anchor arm's is"
        f" {_mean(summary['gaussian'].get('sigma_partial_spread')):+.3f}."
        if sigma_verdict == "indistinguishable from zero"
        else f"- **Does σ carry disagreement beyond μ?** Controlling for the crowd mean, the anchored arm's partial "
        f"rank correlation of σ with the vote spread is {p_mean:+.3f} ± {p_se:.3f}, {sigma_verdict} at two standard"
        f" errors (cubic control: {_mean(anchored.get('sigma_partial_spread_cubic')):+.3f}; no-anchor arm:"
        f" {_mean(summary['gaussian'].get('sigma_partial_spread')):+.3f}). The spread is almost a function of the mean"
        f" (Spearman {_mean(props.get('spread_mean_spearman')):.3f}), so only this partial correlation speaks to it."
    )
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
        f" {span('vote_nll', 4)}. Ranges within about two standard errors are not evidence of an effect."
    )
    ranking = ("kendall_tau", "accuracy_clear", "top_vs_far_auc")
    verdicts = [_verdict(results, ref, m) for ref in ("bt", "gaussian") for m in ranking]
    if "better" in verdicts and "worse" not in verdicts:
        bottom = "the anchored arm ranks held-out captions better than at least one baseline on some metric"
    elif "better" in verdicts:
        bottom = "the ranking comparison is mixed: the anchored arm is better on some metrics and worse on others"
    else:
        bottom = (
            "this run does **not** show anchors improving reward modeling of held-out contests (no ranking metric is"
            " clearly better"
            + ("; the top-10 vs rank-~1000 AUC is clearly worse" if "worse" in verdicts else "")
            + ")"
        )
    lines.append(
        f"- **Bottom line.** With {data['train_pairs']} train pairs and one epoch per run (the CPU budget), {bottom}."
        " Every arm is weak at this budget, so this is a small-budget result, not evidence about well-trained models;"
        " `--train_pairs_per_contest` and `--num_train_epochs` scale the study up with the same command."
    )
    return lines
