"""The Dockerfile lints clean and builds the image the manifests expect.

No Docker engine runs here, so these read the Dockerfile instead of building it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess

import pytest

from .support import DOCKERFILE, DOCKERIGNORE, IMAGE, dockerfile_stages, hadolint, kustomization


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in stage if instruction == name]


def test_hadolint_finds_nothing(tmp_path) -> None:
    # An empty config of our own, so a developer's ~/.config/hadolint.yaml
    # cannot quietly ignore rules here.
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")
    result = subprocess.run(
        [hadolint(), "--config", str(config), "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(result.stdout or "[]")
    report = "\n".join(f"line {f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert result.returncode == 0 and not findings, report or result.stderr


def test_every_hadolint_ignore_says_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.search(r"hadolint\s+(global\s+)?ignore", line):
            previous = lines[number - 1].strip() if number else ""
            explained = previous.startswith("#") and "hadolint" not in previous and len(previous) > 10
            assert explained, f"line {number + 1}: a hadolint ignore needs a comment line above saying why"


def test_the_image_is_built_in_stages_from_a_pinned_slim_python() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        base = instructions(stage, "FROM")[0].split()[0]
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-[a-z]+)?", base), base


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    """Then a code-only change reuses the dependency layer."""
    build = dockerfile_stages()[0]
    order = [(instruction, args) for instruction, args in build if instruction in ("COPY", "RUN")]
    first_copy = next(i for i, (instruction, _) in enumerate(order) if instruction == "COPY")
    assert order[first_copy][1].split() == ["pyproject.toml", "requirements.lock", "./"]
    code_copy = next(i for i, (instruction, args) in enumerate(order) if instruction == "COPY" and "service" in args)
    installs_deps = [
        i for i, (instruction, args) in enumerate(order) if instruction == "RUN" and "pip install" in args and "-r" in args.split()
    ]
    assert installs_deps and first_copy < installs_deps[0] < code_copy
    package_install = [args for instruction, args in order[code_copy:] if instruction == "RUN" and "pip install" in args]
    assert package_install and all("--no-deps" in args for args in package_install)


def test_the_runtime_stage_has_no_build_tools() -> None:
    runtime = dockerfile_stages()[-1]
    for args in instructions(runtime, "RUN"):
        assert not re.search(r"apt-get|apk |gcc|build-essential|pip install", args), args
    copies = instructions(runtime, "COPY")
    assert copies and all(args.startswith("--from=") for args in copies), "runtime copies only from the build stage"


def test_the_server_runs_as_a_fixed_non_root_uid() -> None:
    runtime = dockerfile_stages()[-1]
    users = instructions(runtime, "USER")
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 10000, "a numeric UID, so runAsNonRoot can verify it"
    assert gid.isdigit()
    assert any(f"--uid {uid}" in args for args in instructions(runtime, "RUN"))


def test_the_entrypoint_serves_with_python_m_service_in_exec_form() -> None:
    runtime = dockerfile_stages()[-1]
    entrypoint = json.loads(instructions(runtime, "ENTRYPOINT")[-1])
    command = json.loads(instructions(runtime, "CMD")[-1])
    assert entrypoint + command == ["python", "-m", "service", "serve"]


def test_the_dockerfile_names_the_one_image() -> None:
    text = DOCKERFILE.read_text()
    tag = kustomization("base")["images"][0]["newTag"]
    named = set(re.findall(r"(?<![\w./-])([a-z0-9.-]+(?:/[a-z0-9._-]+)+)(?::([\w.-]+))?", text))
    images = {(name, t) for name, t in named if name.endswith("linkgate")}
    assert images, "the Dockerfile's comments should show how to build and tag the image"
    assert {name for name, _ in images} == {IMAGE}
    assert {t for _, t in images if t} <= {str(tag)}, "the build example's tag differs from the manifests' tag"


# --- .dockerignore ---------------------------------------------------------------


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or a parent decides."""
    patterns = [
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        variants = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
        if any(fnmatch.fnmatchcase(c, v) for c in candidates for v in variants):
            ignored = not negated
    return ignored


@pytest.mark.parametrize(
    "path",
    [".git/HEAD", ".venv/bin/python", "tests/deploy/test_dockerfile.py", "deploy/k8s/base/deployment.yaml",
     "linkgate.db", "service/__pycache__/app.cpython-312.pyc", ".env"],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignored(path)


@pytest.mark.parametrize("path", ["pyproject.toml", "requirements.lock", "README.md", "service/__init__.py", "service/config.py",
                                  "service/store/migrations/alembic.ini"])
def test_dockerignore_lets_in(path: str) -> None:
    assert not dockerignored(path)
