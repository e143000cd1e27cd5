"""The versions `pyproject.toml` declares are versions the test suite ran with: every `>=` floor is the lowest version
pinned in `constraints/tested-*.txt` (the newest-TRL and the TRL 1.12 environments)."""

from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _tested_versions() -> dict[str, list[Version]]:
    tested: dict[str, list[Version]] = {}
    for path in sorted((ROOT / "constraints").glob("tested-*.txt")):
        for line in path.read_text().splitlines():
            if "==" in line and not line.lstrip().startswith("#"):
                name, version = line.split("==")
                tested.setdefault(canonicalize_name(name), []).append(Version(version.strip()))
    return tested


def test_every_declared_floor_is_a_tested_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    tested = _tested_versions()
    floors = {}
    for requirement in requirements:
        for spec in requirement.specifier:
            if spec.operator == ">=":
                floors[canonicalize_name(requirement.name)] = Version(spec.version)
    assert {"trl", "transformers", "torch", "accelerate", "datasets", "peft", "deepspeed"} <= set(floors)
    untested = {
        name: (str(floor), [str(v) for v in tested.get(name, [])])
        for name, floor in floors.items()
        if name not in tested or floor != min(tested[name])
    }
    assert not untested, f"declared floor vs tested versions: {untested}"
