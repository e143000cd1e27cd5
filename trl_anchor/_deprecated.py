"""Import paths of trl-anchor 0.1 that moved in 0.2 keep working, with a `FutureWarning`, until 0.3.

0.1 was a flat package (`trl_anchor.modeling`, `trl_anchor.reward_trainer`, ...). Rather than one shim file per old
module, a meta-path finder resolves each old name to the module that now holds the code, so
`from trl_anchor.modeling import GaussianRewardModel` returns the very same class as
`from trl_anchor.models import GaussianRewardModel`. An old module whose code was split over several modules resolves
to a stand-in module that finds each name in whichever of them now holds it.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

REMOVAL_VERSION = "0.3"

# 0.1 module (relative to `trl_anchor`) -> where it lives now.
MOVED_MODULES = {
    "modeling": "models.modeling_gaussian",
    "packing": "models.packing",
    "reward_config": "trainer.reward_config",
    "reward_trainer": "trainer.reward_trainer",
    "rewards": "rewards.transforms",
    "scoring": "rewards.scoring",
    "reward_functions": "rewards.reward_function",
    "ppo": "rewards.ppo",
    "anchor_labeling": "pipelines.anchor_labeling",
    "best_of_n": "pipelines.best_of_n",
    "evaluation": "pipelines.evaluation",
    "cards": "pipelines.cards",
    "synthetic": "data.synthetic",
    "caption_benchmark": "studies.caption_benchmark",
    "caption_study": "studies.caption_study",
    "simulation": "studies.simulation",
}

# 0.1 modules that were split: besides its `MOVED_MODULES` target, the old path finds the names of these modules.
SPLIT_MODULES = {
    "modeling": ("models.configuration_gaussian",),
    "evaluation": (
        "pipelines.evaluation_plots",
        "pipelines.evaluation_sigma",
        "pipelines.rewardbench",
        "models.loading",
        "data._common",
        "metrics",
    ),
}

# Names 0.1 exported from `trl_anchor` that belong to the research studies, which the namespace no longer exports.
DEPRECATED_NAMES = {
    "run_caption_benchmark": "studies.caption_benchmark",
    "CaptionStudyConfig": "studies.caption_study",
    "run_caption_study": "studies.caption_study",
    "MLPRewardModel": "studies.simulation",
    "SimulationConfig": "studies.simulation",
    "SimulationWorld": "studies.simulation",
    "run_simulation": "studies.simulation",
}


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, target: str, split_into: tuple[str, ...] = ()):
        self.target = target
        self.split_into = split_into

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        if not self.split_into:
            return module
        return _split_module_stand_in(spec.name, [module, *map(importlib.import_module, self.split_into)])

    def exec_module(self, module):
        # The target module is already executed; the old name is only an alias of it.
        pass


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def __init__(self, package: str):
        self.package = package

    def find_spec(self, fullname, path=None, target=None):
        prefix = f"{self.package}."
        if not fullname.startswith(prefix):
            return None
        old = fullname[len(prefix) :]
        new = MOVED_MODULES.get(old)
        # `trl_anchor.rewards` is both a 0.1 module and a 0.2 package; the package wins (its __init__ re-exports
        # everything the old module held).
        if new is None or old == "rewards":
            return None
        warnings.warn(
            f"`{fullname}` moved to `{self.package}.{new}`; the old import path will be removed in trl-anchor "
            f"{REMOVAL_VERSION}.",
            FutureWarning,
            stacklevel=3,
        )
        split_into = tuple(f"{self.package}.{module}" for module in SPLIT_MODULES.get(old, ()))
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(f"{self.package}.{new}", split_into))


def _split_module_stand_in(name: str, sources: list[types.ModuleType]) -> types.ModuleType:
    """A module whose attributes are those of `sources`, the first that has the name winning."""
    stand_in = types.ModuleType(name, sources[0].__doc__)

    def __getattr__(attribute: str):
        for source in sources:
            if hasattr(source, attribute):
                return getattr(source, attribute)
        raise AttributeError(f"module {name!r} has no attribute {attribute!r}")

    stand_in.__getattr__ = __getattr__
    stand_in.__dir__ = lambda: sorted({attribute for source in sources for attribute in dir(source)})
    return stand_in


def install_module_aliases(package: str) -> None:
    """Let `import <package>.<old module>` find the moved module (idempotent)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder(package))
