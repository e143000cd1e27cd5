"""`--anchor_thresholds` takes the list forms users type on `trl-anchor train` and `trl-anchor evaluate` (issue 12)."""

import pytest

from trl_anchor.scripts.evaluate import make_parser as evaluate_parser
from trl_anchor.scripts.train import make_parser as train_parser

TRAIN = ["--output_dir", "out", "--bf16", "False", "--use_cpu", "True", "--report_to", "none"]
EVALUATE = ["--model_name_or_path", "m", "--dataset_name", "d.jsonl"]


@pytest.mark.parametrize(
    "words, expected",
    [(["-1,1"], [-1.0, 1.0]), (["-1", "1"], [-1.0, 1.0]), (["-.5", "-1e-3,2"], [-0.5, -0.001, 2.0]),
     (["auto"], "auto")],
)
def test_train_accepts_list_forms(words, expected):
    _, config, _ = train_parser("train").parse_args_and_config([*TRAIN, "--anchor_thresholds", *words])
    assert config.anchor_thresholds == expected


def test_train_decreasing_thresholds_fail_validation():
    with pytest.raises(ValueError, match="strictly increasing"):
        train_parser("train").parse_args_and_config([*TRAIN, "--anchor_thresholds", "1.0", "0.5"])


@pytest.mark.parametrize("words", [["-1,1"], ["-1", "1"]])
def test_evaluate_accepts_list_forms(words):
    (args,) = evaluate_parser("evaluate").parse_args_and_config([*EVALUATE, "--anchor_thresholds", *words])
    assert args.anchor_thresholds == [-1.0, 1.0]


@pytest.mark.parametrize("module, argv", [
    ("label_anchors", ["--reward_model", "rm", "--dataset_name", "d.jsonl", "--output_dir", "o"]),
    ("bon", []),
    ("train", TRAIN),
])
def test_unknown_dtype_is_named(module, argv, capsys):
    import importlib

    parser = importlib.import_module(f"trl_anchor.scripts.{module}").make_parser(module)
    with pytest.raises(SystemExit):
        parser.parse_args_and_config([*argv, "--dtype", "float33"])
    assert "invalid choice: 'float33'" in capsys.readouterr().err
