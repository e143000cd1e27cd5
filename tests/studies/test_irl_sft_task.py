"""The IRL-SFT study's task: exact answers by brute force, the corruption fraction, the exact-match metric, the
character tokenizer, the summary statistics, and a tiny end-to-end run that writes the report."""

import itertools
import json

import numpy as np
import pytest
from datasets import Dataset

from trl_anchor.studies.irl_sft_report import summarize
from trl_anchor.studies.irl_sft_task import (
    IRLSFTStudyConfig,
    build_tokenizer,
    corrupt,
    exact_match,
    make_task,
    reference_answer,
    run_study,
)


def brute_force_sorted(word: str) -> str:
    """The unique non-decreasing rearrangement of `word`, found among all its permutations."""
    candidates = {"".join(p) for p in itertools.permutations(word)}
    ordered = [c for c in candidates if all(a <= b for a, b in zip(c, c[1:], strict=False))]
    assert len(ordered) == 1
    return ordered[0]


def counting_sort(word: str, alphabet: str = "abcdefghij") -> str:
    """Sorted letters by counting (independent of `sorted`); cheap for 8-letter words where permutations are not."""
    return "".join(letter * word.count(letter) for letter in alphabet)


def one_edit_apart(a: str, b: str) -> bool:
    """True when b is a with one adjacent transposition, substitution, insertion or deletion (brute force)."""
    letters = set(a) | set(b)
    edits = {a[:i] + a[i + 1] + a[i] + a[i + 2 :] for i in range(len(a) - 1)}
    edits |= {a[:i] + c + a[i + 1 :] for i in range(len(a)) for c in letters}
    edits |= {a[:i] + c + a[i:] for i in range(len(a) + 1) for c in letters}
    edits |= {a[:i] + a[i + 1 :] for i in range(len(a))}
    return b in edits - {a}


def test_reference_answer_matches_brute_force_on_every_short_word():
    for length in range(1, 5):
        for letters in itertools.product("abc", repeat=length):
            word = "".join(letters)
            assert reference_answer(word + ">") == brute_force_sorted(word)


@pytest.mark.parametrize("noise", [0.0, 0.2, 0.4])
def test_task_corrupts_exactly_the_requested_fraction_with_one_wrong_edit(noise):
    task = make_task(num_train=200, num_test=50, noise=noise, seed=3)
    prompts, completions = list(task.train["prompt"]), list(task.train["completion"])
    corrupted = list(task.train["corrupted"])
    assert sum(corrupted) == round(noise * 200)
    for prompt, completion, bad in zip(prompts, completions, corrupted, strict=True):
        answer = counting_sort(prompt[:-1])
        if bad:
            assert completion != answer and one_edit_apart(answer, completion)
        else:
            assert completion == answer
    assert not set(prompts) & set(task.test_prompts) and len(set(prompts)) == 200
    assert all(4 <= len(p) - 1 <= 8 and p.endswith(">") for p in prompts + task.test_prompts)
    again = make_task(num_train=200, num_test=50, noise=noise, seed=3)
    assert list(again.train["completion"]) == completions and again.test_prompts == task.test_prompts


def test_corruption_is_always_wrong_even_for_repeated_letters():
    rng = np.random.default_rng(0)
    for answer in ["aaaa", "ab", "a", "abbbc"]:
        for _ in range(50):
            edited = corrupt(answer, "abc", rng)
            assert edited != answer and one_edit_apart(answer, edited)
    with pytest.raises(ValueError, match="`noise` must lie in"):
        make_task(10, 5, noise=1.0, seed=0)


def test_exact_match_counts_exact_answers():
    prompts = ["cba>", "dd>", "bca>", "ab>"]
    predictions = ["abc", "dd", "bac", "ab "]
    expected = sum(p == brute_force_sorted(x[:-1]) for p, x in zip(predictions, prompts, strict=True)) / 4
    assert exact_match(predictions, prompts) == expected == 0.5
    with pytest.raises(ValueError, match="3 predictions for 4 prompts"):
        exact_match(predictions[:3], prompts)


def test_character_tokenizer_round_trips_and_pads_with_eos():
    tokenizer = build_tokenizer("abcdefghij")
    ids = tokenizer("jab>cd")["input_ids"]
    assert len(ids) == 6 and tokenizer.decode(ids) == "jab>cd"
    assert tokenizer.pad_token == tokenizer.eos_token == "<eos>"


def test_summary_means_standard_errors_and_paired_differences():
    runs = [
        {"arm": "sft", "noise": 0.2, "seed": s, "accuracy": a, "seconds": 1.0} for s, a in enumerate([0.5, 0.6, 0.4])
    ] + [
        {"arm": "irft", "noise": 0.2, "seed": s, "accuracy": a, "seconds": 3.0} for s, a in enumerate([0.6, 0.6, 0.7])
    ]
    entry = summarize(runs)["irft"]["0.2"]
    # Hand-worked: mean (0.6 + 0.6 + 0.7)/3; paired differences 0.1, 0.0, 0.3 → mean 0.1333, sd 0.15275, SE sd/√3.
    assert entry["accuracy"] == pytest.approx(0.633333, abs=1e-6)
    assert entry["accuracy_se"] == pytest.approx(np.sqrt(1 / 300) / np.sqrt(3), abs=1e-9)
    assert entry["diff_vs_sft"] == pytest.approx(0.133333, abs=1e-6)
    assert entry["diff_vs_sft_se"] == pytest.approx(0.152753 / np.sqrt(3), abs=1e-6)
    assert entry["seeds"] == 3 and entry["seconds"] == 3.0
    weighted = runs + [
        {"arm": "irft_weighted", "noise": 0.2, "seed": s, "accuracy": a, "seconds": 4.0, "weight_auc": [0.6, 0.7]}
        for s, a in enumerate([0.65, 0.6, 0.8])
    ]
    entry = summarize(weighted)["irft_weighted"]["0.2"]
    # Gains over IRFT per seed: 0.05, 0.0, 0.1 → mean 0.05, sd 0.05, SE 0.05/√3; AUC averaged over rounds and seeds.
    assert entry["diff_vs_unweighted"] == pytest.approx(0.05, abs=1e-12)
    assert entry["diff_vs_unweighted_se"] == pytest.approx(0.05 / np.sqrt(3), abs=1e-12)
    assert entry["weight_auc"] == pytest.approx(0.65)


def test_weight_auc_counts_corrupted_below_clean_pairs(tmp_path):
    from trl_anchor.studies.irl_sft_task import TaskData, _weight_auc

    train = Dataset.from_dict({"corrupted": [True, False, False, True, False]})
    # P(demo ≻ samples): corrupted 0.2 and 0.5 (NaN row excluded), clean 0.3, 0.5, 0.9.
    prob = [0.2, 0.3, 0.5, 0.5, 0.9]
    (tmp_path / "round-1").mkdir()
    (tmp_path / "round-1" / "demo_weights.json").write_text(json.dumps({"prob": prob}))
    (tmp_path / "round-2").mkdir()
    (tmp_path / "round-2" / "demo_weights.json").write_text(json.dumps({"prob": [None, 0.3, 0.5, 0.4, 0.9]}))
    aucs = _weight_auc(tmp_path, TaskData(train=train, test_prompts=[]), num_rounds=3)
    # Round 1: pairs (0.2 vs 0.3, 0.5, 0.9) → 3 wins; (0.5 vs 0.3, 0.5, 0.9) → 0 + ½ + 1; total 4.5 / 6.
    # Round 2: corrupted row 0 is NaN; 0.4 vs (0.3, 0.5, 0.9) → 2 / 3. Round 3 has no file.
    assert aucs == [pytest.approx(0.75), pytest.approx(2 / 3), None]


@pytest.mark.slow
def test_tiny_study_writes_the_report(tmp_path):
    config = IRLSFTStudyConfig(
        report_dir=str(tmp_path / "report"), seeds=[0], noise_levels=[0.25], weighted_noise_levels=[0.25],
        arms=["sft", "irft", "rft_weighted"], num_train=16, num_test=12, warm_start_steps=4, num_rounds=1,
        steps_per_round=2, reward_steps_per_round=2, batch_size=8,
    )
    results = run_study(config)
    arms = [run["arm"] for run in results["runs"]]
    assert arms == ["warm_start", "sft", "irft", "rft_weighted"]
    assert all(0.0 <= run["accuracy"] <= 1.0 for run in results["runs"])
    weighted = results["runs"][-1]
    assert len(weighted["rounds"]) == 1 and "demo_win_prob_mean" in weighted["rounds"][0]
    assert len(weighted["weight_auc"]) == 1
    report = (tmp_path / "report" / "README.md").read_text()
    assert "| RFT + σ-weighting |" in report and "25% corrupted" in report
    assert json.loads((tmp_path / "report" / "results.json").read_text())["summary"]["irft"]["0.25"]["seeds"] == 1
    assert (tmp_path / "report" / "accuracy.png").stat().st_size > 10_000
