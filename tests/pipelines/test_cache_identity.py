"""Score caches are keyed on everything that changes a score (issue 12): `label_anchors` on the scorer's weights and
`max_length` and refuses an anonymous lambda; best-of-N refuses scores of a reward model retrained in place."""

import os

import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset
from transformers import AutoTokenizer, GPT2ForSequenceClassification

from trl_anchor.models.loading import weights_fingerprint
from trl_anchor.pipelines.anchor_labeling import label_anchors
from trl_anchor.pipelines.best_of_n import BestOfNPipeline
from trl_anchor.pipelines.best_of_n.cache import BestOfNCacheError
from trl_anchor.rewards.scoring import score_responses

LONG = " ".join(f"word{i}" for i in range(40))


def _pairs():
    return Dataset.from_dict({
        "prompt": ["question one ", "question two ", "question three ", "question four "],
        "chosen": [LONG, "a good answer", LONG + " more", "fine"],
        "rejected": ["bad", LONG + " again", "no", "short " + LONG],
    })


def _save_rm(path, tokenizer, seed):
    torch.manual_seed(seed)
    GPT2ForSequenceClassification(tiny_gpt2_config(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)


def test_label_anchors_rescores_when_max_length_changes(tmp_path, tokenizer):
    _save_rm(tmp_path / "rm", tokenizer, seed=0)
    cache = tmp_path / "scores.jsonl"
    data = _pairs()
    full = label_anchors(data, str(tmp_path / "rm"), cache_file=cache)
    short = label_anchors(data, str(tmp_path / "rm"), cache_file=cache, max_length=8)
    assert short.num_cached == 0 and short.num_scored == 8
    model = GPT2ForSequenceClassification.from_pretrained(tmp_path / "rm")
    expected = score_responses(model, tokenizer, list(data["chosen"]), list(data["prompt"]), max_length=8).mean
    assert short.dataset["chosen_score"] == pytest.approx(expected.tolist(), abs=1e-5)
    assert short.dataset["chosen_score"] != pytest.approx(full.dataset["chosen_score"], abs=1e-3)
    again = label_anchors(data, str(tmp_path / "rm"), cache_file=cache, max_length=8)
    assert again.num_scored == 0 and again.dataset["chosen_score"] == short.dataset["chosen_score"]


def test_label_anchors_rescores_a_model_retrained_in_place(tmp_path, tokenizer):
    _save_rm(tmp_path / "rm", tokenizer, seed=0)
    cache = tmp_path / "scores.jsonl"
    first = label_anchors(_pairs(), str(tmp_path / "rm"), cache_file=cache)
    _save_rm(tmp_path / "rm", tokenizer, seed=1)  # same path, new weights
    second = label_anchors(_pairs(), str(tmp_path / "rm"), cache_file=cache)
    assert second.num_cached == 0
    assert second.dataset["chosen_score"] != pytest.approx(first.dataset["chosen_score"], abs=1e-3)


def test_label_anchors_model_instance_changed_in_memory_is_rescored(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(tiny_gpt2_config(tokenizer))
    cache = tmp_path / "scores.jsonl"
    first = label_anchors(_pairs(), model, tokenizer=tokenizer, scorer_id="rm", cache_file=cache)
    with torch.no_grad():
        model.score.weight.mul_(2.0)
    second = label_anchors(_pairs(), model, tokenizer=tokenizer, scorer_id="rm", cache_file=cache)
    assert second.num_cached == 0
    assert second.dataset["chosen_score"] != pytest.approx(first.dataset["chosen_score"], abs=1e-3)


def test_label_anchors_refuses_anonymous_lambdas_with_a_cache(tmp_path):
    cache = tmp_path / "scores.jsonl"
    with pytest.raises(ValueError, match="pass `scorer_id`"):
        label_anchors(_pairs(), lambda p, r: [float(len(x)) for x in r], cache_file=cache)
    # Without a cache there is nothing to mix up; with an explicit id the lambda is cached under it.
    assert label_anchors(_pairs(), lambda p, r: [1.0 * len(x) for x in r]).num_scored == 8
    negative = label_anchors(_pairs(), lambda p, r: [-1.0 * len(x) for x in r], scorer_id="neg", cache_file=cache)
    assert negative.num_scored == 8


def test_non_utf8_cache_file_is_named(tmp_path):
    cache = tmp_path / "scores.jsonl"
    cache.write_bytes(b"\xff\xfe binary junk\n")
    with pytest.raises(ValueError, match="scores.jsonl is not UTF-8"):
        label_anchors(_pairs(), lambda p, r: [1.0] * len(r), scorer_id="one", cache_file=cache)


def test_weights_fingerprint_follows_the_files(tmp_path, tokenizer):
    _save_rm(tmp_path / "rm", tokenizer, seed=0)
    before = weights_fingerprint(tmp_path / "rm")
    assert weights_fingerprint(str(tmp_path / "rm")) == before
    weights = tmp_path / "rm" / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert weights_fingerprint(tmp_path / "rm") != before
    assert weights_fingerprint("org/not-a-local-dir") is None


def test_best_of_n_refuses_scores_of_a_reward_model_retrained_in_place(tmp_path, tokenizer, tiny_causal_lm_dir):
    from transformers import AutoModelForCausalLM

    rm = tmp_path / "rm"
    _save_rm(rm, tokenizer, seed=0)
    policy = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir)
    policy_tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_dir)
    prompts = [[{"role": "user", "content": "what is two plus two"}], [{"role": "user", "content": "hi"}]]
    pipe = BestOfNPipeline(prompts, tmp_path / "bon", num_samples=2, show_progress=False)
    from trl_anchor.pipelines.best_of_n import GenerationSettings

    pipe.generate(policy, policy_tokenizer, GenerationSettings(max_new_tokens=4, batch_size=4, seed=0))
    assert pipe.score(str(rm)) == 4
    assert pipe.score(str(rm)) == 0  # unchanged model: the cache is reused
    _save_rm(rm, tokenizer, seed=1)
    with pytest.raises(BestOfNCacheError, match="reward_weights"):
        pipe.score(str(rm))


@pytest.mark.parametrize("damaged", ["scores.jsonl", "scores.meta.json"])
def test_best_of_n_unreadable_cache_files_are_named(tmp_path, damaged):
    from trl_anchor.pipelines.best_of_n.cache import StageCache

    settings = {"reward_model": "rm"}
    row = {"prompt_id": "a", "sample_index": 0, "mean": 1.0}
    StageCache(tmp_path, "scores", settings, ("mean",)).open().append([row])
    (tmp_path / damaged).write_bytes(b"\xff\xfe\x00 not text\n")
    with pytest.raises(BestOfNCacheError, match=damaged.replace(".", r"\.")):
        StageCache(tmp_path, "scores", settings, ("mean",)).open()
