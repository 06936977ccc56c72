"""constraints-lower.txt pins exactly the lower bounds pyproject.toml declares (scripts/test-lower-bounds tests
with it), and the bounds known to be needed are declared."""
from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["infra"]]
    return {Requirement(r).name.lower(): Requirement(r) for r in reqs}


def _pinned() -> dict[str, str]:
    lines = [x.split("#")[0].strip() for x in (ROOT / "constraints-lower.txt").read_text().splitlines()]
    return {name.lower(): version for name, _, version in (x.partition("==") for x in lines if x)}


def test_every_dependency_is_pinned_at_its_lower_bound():
    declared, pinned = _declared(), _pinned()
    assert set(pinned) == set(declared)
    for name, req in declared.items():
        lower = [s.version for s in req.specifier if s.operator == ">="]
        assert [Version(v) for v in lower] == [Version(pinned[name])], \
            f"{name}: pyproject says {req.specifier}, constraints pin {pinned[name]}"


def test_bounds_that_are_known_to_matter():
    declared = _declared()
    assert "0.2.25" not in declared["oras"].specifier           # cannot push to an htpasswd registry
    assert "0.3.0" not in declared["oras"].specifier            # oras-py internals are used: no unseen minor
    assert "4.6.0" not in declared["pulumi-docker"].specifier   # no Container(cpus=)
    assert "4.26.0" not in declared["pulumi-kubernetes"].specifier   # no OCI registry login for a Helm Release
