"""The `trl_anchor` namespace: what it exports, that studies stay out of it, and the 0.1 import paths."""

import importlib
import subprocess
import sys

import pytest

import trl_anchor
from trl_anchor._deprecated import DEPRECATED_NAMES, MOVED_MODULES, SPLIT_MODULES

STUDY_NAMES = {
    "run_simulation",
    "SimulationConfig",
    "run_caption_study",
    "CaptionStudyConfig",
    "run_caption_benchmark",
}


def test_every_exported_name_resolves():
    for name in trl_anchor.__all__:
        assert getattr(trl_anchor, name) is not None, name


def test_namespace_exposes_no_study():
    exported = set(trl_anchor.__all__) | set(dir(trl_anchor))
    assert not STUDY_NAMES & exported
    for name in trl_anchor.__all__:
        module = getattr(getattr(trl_anchor, name), "__module__", "") or ""
        assert ".studies" not in module, (name, module)


def test_import_does_not_load_studies_or_trainers():
    # A fresh interpreter: importing the package must not pull in the studies (or any heavy submodule).
    code = "import sys, trl_anchor; print(sorted(m for m in sys.modules if m.startswith('trl_anchor.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "studies" not in loaded and "trainer" not in loaded


@pytest.mark.parametrize("old, new", sorted(MOVED_MODULES.items()))
def test_old_module_paths_still_import_the_moved_module(old, new):
    new_module = importlib.import_module(f"trl_anchor.{new}")
    if old == "rewards":  # the old module became the package that re-exports it
        package = importlib.import_module("trl_anchor.rewards")
        assert package.RewardTransform is new_module.RewardTransform
        return
    sys.modules.pop(f"trl_anchor.{old}", None)
    with pytest.warns(FutureWarning, match=f"trl_anchor.{old}` moved to `trl_anchor.{new}"):
        old_module = importlib.import_module(f"trl_anchor.{old}")
    if old not in SPLIT_MODULES:
        assert old_module is new_module
        return
    # A split module: the old path finds every function and class of each module that now holds part of its code.
    for part in (new_module, *(importlib.import_module(f"trl_anchor.{m}") for m in SPLIT_MODULES[old])):
        for name, value in vars(part).items():
            if not name.startswith("_") and getattr(value, "__module__", None) == part.__name__:
                assert getattr(old_module, name) is value, (old, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        old_module.no_such_name  # noqa: B018


def test_old_evaluation_path_still_has_rewardbench_and_the_loader():
    sys.modules.pop("trl_anchor.evaluation", None)
    with pytest.warns(FutureWarning):
        from trl_anchor.evaluation import evaluate_rewardbench, load_local_dataset, load_reward_model
    from trl_anchor.data._common import load_local_dataset as moved_loader
    from trl_anchor.models.loading import load_reward_model as moved_model_loader
    from trl_anchor.pipelines.rewardbench import evaluate_rewardbench as moved

    assert evaluate_rewardbench is moved and load_reward_model is moved_model_loader
    assert load_local_dataset is moved_loader


def test_from_import_of_an_old_path_returns_the_same_class():
    sys.modules.pop("trl_anchor.modeling", None)
    with pytest.warns(FutureWarning):
        from trl_anchor.modeling import GaussianRewardModel
    from trl_anchor.models import GaussianRewardModel as moved

    assert GaussianRewardModel is moved


@pytest.mark.parametrize("name", sorted(DEPRECATED_NAMES))
def test_study_names_warn_and_resolve(name):
    with pytest.warns(FutureWarning, match="no longer exported"):
        value = getattr(trl_anchor, name)
    module = importlib.import_module(f"trl_anchor.{DEPRECATED_NAMES[name]}")
    assert value is getattr(module, name)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        trl_anchor.no_such_name  # noqa: B018
