"""docs/deploy.md tells the operator what the manifests, the image and the app really do."""

from __future__ import annotations

import re
from glob import glob

import pytest

from .support import (
    DEPLOY_DOC,
    EXTRA_LINKGATE_VARS,
    IMAGE,
    PROD_SECRET_EXAMPLE,
    REPO,
    TARGETS,
    app_container,
    container_environment,
    kustomization,
    load_yaml,
    one,
    render,
)


@pytest.fixture(scope="module")
def doc() -> str:
    assert DEPLOY_DOC.exists(), f"{DEPLOY_DOC} is missing"
    return DEPLOY_DOC.read_text()


def settings_fields() -> set[str]:
    from service.config import ENV_PREFIX, Settings

    return {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}


def metric_sample_names() -> set[str]:
    from prometheus_client.metrics import MetricWrapperBase

    from service import metrics

    suffixes = ("", "_total", "_created", "_bucket", "_sum", "_count")
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names |= {value._name + suffix for suffix in suffixes}
    return names


def test_the_doc_has_the_two_readme_sections_in_order(doc: str) -> None:
    assert re.findall(r"^## .*$", doc, flags=re.M) == ["## Deploy", "## Operate"]


def test_every_image_the_doc_names_is_the_one_image_with_the_manifests_tag(doc: str) -> None:
    tag = str(kustomization("base")["images"][0]["newTag"])
    images = re.findall(r"(?<![\w./-])((?:[A-Za-z0-9.-]+/)*linkgate/linkgate)(?::([\w.-]+))?", doc)
    assert images, "the doc should show how to build the image"
    for name, image_tag in images:
        assert name in (IMAGE, f"REGISTRY/{IMAGE}"), name
        assert image_tag in ("", tag), f"{name}:{image_tag} differs from the manifests' tag {tag}"
    for line in doc.splitlines():
        if re.search(r"docker (build|tag|push|run)|kind load|image load|buildx", line):
            for name in re.findall(r"(?<![\w./=-])([A-Za-z][\w./-]*):[\w.-]+", line):
                assert name.endswith(IMAGE), f"an image in `{line.strip()}` is not {IMAGE}"


def test_every_setting_the_doc_names_exists(doc: str) -> None:
    known = settings_fields() | EXTRA_LINKGATE_VARS
    named = {name for name in re.findall(r"LINKGATE_[A-Z_]*[A-Z]", doc)}
    assert not named - known, sorted(named - known)
    metrics = metric_sample_names()
    lower = set(re.findall(r"\blinkgate_[a-z_]+[a-z]\b", doc))
    unknown = {n for n in lower if n.upper() not in known and n not in metrics}
    assert not unknown, f"neither a setting nor a metric of service.metrics: {sorted(unknown)}"


def test_the_settings_table_lists_every_key_of_the_secret(doc: str) -> None:
    table_secrets = set(re.findall(r"^\| `(linkgate_[a-z_]+)` \| Secret \|", doc, flags=re.M))
    template = set(one(load_yaml(PROD_SECRET_EXAMPLE), "Secret")["stringData"])
    assert template <= table_secrets
    assert {key.upper() for key in table_secrets} <= settings_fields()


def test_every_path_the_doc_names_exists(doc: str) -> None:
    for path in set(re.findall(r"(?<![\w/])((?:deploy/k8s|docs|service)(?:/[\w./*-]*[\w*])?)\b", doc)):
        assert glob(str(REPO / path)), f"{path} does not exist"


def test_the_doc_states_the_autoscaler_bounds_of_every_target(doc: str) -> None:
    stated = {target: (int(low), int(high))
              for low, high, target in re.findall(r"(\d+) to (\d+)(?:\s+replicas)?\s+in\s+(?:the\s+)?(base|dev|prod)\b", doc)}
    for target in TARGETS:
        hpa = one(render(target), "HorizontalPodAutoscaler")
        assert stated.get(target) == (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]), target


def test_the_connection_budget_matches_the_prod_defaults(doc: str) -> None:
    from service.config import Settings

    resources = render("prod")
    environment = container_environment(resources, app_container(resources))
    workers = int(environment["LINKGATE_WORKERS"])
    pool = int(environment.get("LINKGATE_DATABASE_POOL_SIZE", Settings.model_fields["database_pool_size"].default))
    max_replicas = one(resources, "HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    assert f"({max_replicas * workers * 2 * pool} with the prod defaults)" in doc


def test_the_probe_table_matches_the_manifests(doc: str) -> None:
    container = app_container(render("base"))
    for probe, row in (("startupProbe", "startup"), ("livenessProbe", "liveness"), ("readinessProbe", "readiness")):
        path = container[probe]["httpGet"]["path"]
        assert re.search(rf"^\| {row} \| `{re.escape(path)}` \|", doc, flags=re.M), (probe, path)
