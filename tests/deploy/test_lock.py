"""requirements.lock pins the whole runtime closure the image installs, within pyproject's ranges."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .support import REPO

LOCK = REPO / "requirements.lock"


def pins() -> dict[str, str]:
    out = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"not an exact pin: {line}"
        assert not requirement.extras, f"extras in a constraints file break pip -c: {line}"
        out[canonicalize_name(requirement.name)] = specifiers[0].version
    return out


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    locked = pins()
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is not in requirements.lock: run make lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{requirement.name}=={locked[name]} is outside {requirement.specifier}: run make lock"
        )


def test_the_lock_holds_every_dependency_of_its_pins_so_no_deps_installs_complete() -> None:
    """The image installs the lock with --no-deps: each pin's own runtime requirements must be pinned too."""
    locked = pins()
    env = {"extra": ""}
    wanted: list[tuple[str, Requirement]] = [("pyproject.toml", r) for r in runtime_requirements()]
    for name in locked:
        for text in metadata.requires(name) or []:
            wanted.append((name, Requirement(text)))
    for parent, requirement in wanted:
        if requirement.marker is not None and not requirement.marker.evaluate(env):
            continue
        assert canonicalize_name(requirement.name) in locked, f"{parent} needs {requirement}, not in the lock"
    # pyproject's extras (uvicorn[standard], redis[hiredis], ...) bring theirs along.
    for requirement in runtime_requirements():
        for extra in requirement.extras:
            for text in metadata.requires(requirement.name) or []:
                needed = Requirement(text)
                if needed.marker is not None and needed.marker.evaluate({"extra": extra}) and not (
                    needed.marker.evaluate({"extra": ""})
                ):
                    assert canonicalize_name(needed.name) in locked, f"{requirement} needs {needed}"


def test_the_tests_run_on_the_versions_the_lock_pins() -> None:
    """make install constrains .venv to the lock, so what passes here is what the image ships."""
    for name, version in pins().items():
        assert metadata.version(name) == version, f"{name}: installed {metadata.version(name)}, locked {version}"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"pip install .*-c requirements\.lock .*-e '\.\[test\]'", makefile)
