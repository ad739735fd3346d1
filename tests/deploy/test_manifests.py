"""The Kubernetes manifests render, validate, and agree with the service they run."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from .support import (
    APP_NAME,
    EXTRA_LINKGATE_VARS,
    IMAGE,
    IMAGE_PLACEHOLDER,
    KUBERNETES_VERSION,
    OVERLAYS,
    PROD_SECRET_EXAMPLE,
    TARGETS,
    all_containers,
    app_container,
    app_deployment,
    container_environment,
    dockerfile_stages,
    kubernetes_validate,
    kustomization,
    load_yaml,
    of_kind,
    one,
    pod_spec,
    render,
)

ALL_TARGETS = pytest.mark.parametrize("target", list(TARGETS), ids=list(TARGETS))
EACH_OVERLAY = pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAYS)
SECRET_MOUNT = "/run/secrets/linkgate"


def secret_data(secret: dict) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    values.update(secret.get("stringData", {}))
    return values


def settings_fields() -> set[str]:
    from service.config import ENV_PREFIX, Settings

    return {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}


def app_secret(overlay: str) -> dict:
    """The Secret linkgate reads: generated in dev, the committed template in prod."""
    if overlay == "prod":
        return one(load_yaml(PROD_SECRET_EXAMPLE), "Secret")
    return one(render(overlay), "Secret", "linkgate-secrets")


def paths_the_app_does_not_serve(paths: set[str]) -> set[str]:
    """Asks the app's own router which GET paths it matches, whatever the FastAPI version."""
    try:
        from service.app import create_app
        from service.config import Settings
    except ImportError as exc:
        pytest.fail(f"service.app.create_app is not importable yet: {exc}", pytrace=False)
    from starlette.routing import Match

    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))

    def served(path: str) -> bool:
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"", "headers": []}
        return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)

    return {path for path in paths if not served(path)}


def resolve_port(container: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"port name {port!r} is not a port of container {container['name']}"
    return named[port]


# --- render and validate ----------------------------------------------------


@ALL_TARGETS
def test_kustomize_renders_the_target(target: str) -> None:
    kinds = {r["kind"] for r in render(target)}
    assert {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler"} <= kinds


@ALL_TARGETS
def test_every_rendered_resource_passes_strict_schema_validation(target: str) -> None:
    kv = kubernetes_validate()
    failures = []
    for resource in render(target):
        try:
            kv.validate(resource, KUBERNETES_VERSION, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            failures.append(f"{resource['kind']}/{resource['metadata']['name']}: {path}: {exc.message}")
        except kv.SchemaNotFoundError as exc:
            failures.append(exc.message)
    assert not failures, "\n".join(failures)


def test_prod_secret_template_passes_strict_schema_validation() -> None:
    kv = kubernetes_validate()
    for resource in load_yaml(PROD_SECRET_EXAMPLE):
        kv.validate(resource, KUBERNETES_VERSION, strict=True)


def test_base_has_every_piece_of_the_stack() -> None:
    kinds = {r["kind"] for r in render("base")}
    assert kinds >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceAccount",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Ingress",
    }


# --- the app behind the manifests ------------------------------------------


@ALL_TARGETS
def test_probe_and_metrics_paths_are_routes_of_the_app(target: str) -> None:
    container = app_container(render(target))
    probe_paths = {
        container[p]["httpGet"]["path"].split("?")[0] for p in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    annotations = app_deployment(render(target))["spec"]["template"]["metadata"]["annotations"]
    wanted = probe_paths | {annotations["prometheus.io/path"]}
    missing = paths_the_app_does_not_serve(wanted)
    assert not missing, f"paths the manifests use but the app does not serve: {sorted(missing)}"


@ALL_TARGETS
def test_liveness_is_healthz_and_readiness_is_readyz(target: str) -> None:
    container = app_container(render(target))
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz?tolerate=sql,redis"


@ALL_TARGETS
def test_the_readiness_probe_tolerates_only_checks_the_app_knows(target: str) -> None:
    from urllib.parse import parse_qs, urlsplit

    path = app_container(render(target))["readinessProbe"]["httpGet"]["path"]
    tolerated = parse_qs(urlsplit(path).query)["tolerate"][0].split(",")
    assert set(tolerated) <= {"sql", "redis"}


@ALL_TARGETS
def test_every_port_agrees_with_the_port_the_server_binds(target: str) -> None:
    resources = render(target)
    container = app_container(resources)
    environment = container_environment(resources, container)
    assert environment.get("LINKGATE_HOST") == "0.0.0.0", "the server must listen on the pod's address"
    bound = int(environment["LINKGATE_PORT"])

    assert resolve_port(container, "http") == bound
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert resolve_port(container, container[probe]["httpGet"]["port"]) == bound, probe
    annotations = app_deployment(resources)["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == bound
    service = one(resources, "Service", APP_NAME)
    assert [resolve_port(container, p["targetPort"]) for p in service["spec"]["ports"]] == [bound]
    policy = one(resources, "NetworkPolicy", APP_NAME)
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [bound]


def test_image_defaults_bind_the_same_port_as_the_manifests() -> None:
    runtime = dockerfile_stages()[-1]
    env_text = " ".join(args for instruction, args in runtime if instruction == "ENV")
    exposed = [args for instruction, args in runtime if instruction == "EXPOSE"]
    port = int(app_container(render("base"))["ports"][0]["containerPort"])
    assert f"LINKGATE_PORT={port}" in env_text
    assert "LINKGATE_HOST=0.0.0.0" in env_text
    assert exposed == [str(port)]


@ALL_TARGETS
def test_every_linkgate_variable_the_manifests_set_is_a_setting(target: str) -> None:
    resources = render(target)
    known = settings_fields() | EXTRA_LINKGATE_VARS
    named: set[str] = set()
    for configmap in of_kind(resources, "ConfigMap"):
        named |= set(configmap.get("data", {}))
    for secret in of_kind(resources, "Secret"):
        named |= {key.upper() for key in secret_data(secret)}
    for workload in of_kind(resources, "Deployment"):
        for container in all_containers(pod_spec(workload)):
            named |= {var["name"] for var in container.get("env", [])}
    unknown = {name for name in named if name.startswith("LINKGATE_")} - known
    assert not unknown, f"not fields of service.config.Settings: {sorted(unknown)}"


def test_every_key_of_the_prod_secret_template_is_a_setting() -> None:
    keys = {key.upper() for key in secret_data(app_secret("prod"))}
    assert keys <= settings_fields(), sorted(keys - settings_fields())


@EACH_OVERLAY
def test_settings_built_from_the_overlay_are_valid(overlay: str, tmp_path, monkeypatch) -> None:
    """ConfigMap as env vars plus the Secret as files: what Settings.from_env sees in the pod."""
    from service.config import ENV_PREFIX, Settings

    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    resources = render(overlay)
    container = app_container(resources)
    environment = container_environment(resources, container)
    assert environment["LINKGATE_SECRETS_DIR"] == SECRET_MOUNT
    secrets = secret_data(app_secret(overlay))
    for key, value in secrets.items():
        (tmp_path / key).write_text(value + "\n")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LINKGATE_SECRETS_DIR", str(tmp_path))

    settings = Settings.from_env()

    assert settings.database_url == secrets["linkgate_database_url"]
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.redis_url == secrets["linkgate_redis_url"]
    assert settings.hashids_salt == secrets["linkgate_hashids_salt"]
    assert not settings.uses_dev_salt


@EACH_OVERLAY
def test_secret_settings_are_never_shadowed_by_plain_env_vars(overlay: str) -> None:
    """An env var wins over a secret file, so a Secret key set as env would be ignored."""
    resources = render(overlay)
    container = app_container(resources)
    plain = set(container_environment(resources, container))
    secret_keys = {key.upper() for key in secret_data(app_secret(overlay))}
    assert not plain & secret_keys


@ALL_TARGETS
def test_the_secret_is_mounted_where_linkgate_secrets_dir_points(target: str) -> None:
    resources = render(target)
    spec = pod_spec(app_deployment(resources))
    secret_volumes = {v["name"] for v in spec["volumes"] if "secret" in v}
    for container in all_containers(spec):
        assert container_environment(resources, container)["LINKGATE_SECRETS_DIR"] == SECRET_MOUNT
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get(SECRET_MOUNT) in secret_volumes, container["name"]


def test_the_commands_the_image_and_manifests_run_exist() -> None:
    for command in ("serve", "migrate", "consume-visits"):
        result = subprocess.run(
            [sys.executable, "-m", "service", command, "--help"], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, f"`python -m service {command} --help` failed:\n{result.stderr}"


# --- the pod ------------------------------------------------------------------


@ALL_TARGETS
def test_linkgate_pods_run_locked_down(target: str) -> None:
    image_user = next(args for instruction, args in dockerfile_stages()[-1] if instruction == "USER")
    uid = int(image_user.split(":")[0])
    deployment = app_deployment(render(target))
    spec = pod_spec(deployment)
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == uid
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in all_containers(spec):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert "add" not in context["capabilities"], container["name"]
        assert context.get("runAsUser", uid) == uid, container["name"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAYS)
def test_every_pod_meets_the_restricted_pod_security_standard(overlay: str) -> None:
    resources = render(overlay)
    namespace = one(resources, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in of_kind(resources, "Deployment") + of_kind(resources, "StatefulSet"):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec.get("automountServiceAccountToken") is False, workload["metadata"]["name"]
        for container in all_containers(spec):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]


@ALL_TARGETS
def test_every_container_has_requests_and_limits(target: str) -> None:
    for workload in of_kind(render(target), "Deployment") + of_kind(render(target), "StatefulSet"):
        for container in all_containers(pod_spec(workload)):
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), (container["name"], bound)


@ALL_TARGETS
def test_a_rollout_never_drops_below_current_capacity(target: str) -> None:
    deployment = app_deployment(render(target))
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


@ALL_TARGETS
def test_endpoints_drain_before_sigterm(target: str) -> None:
    deployment = app_deployment(render(target))
    container = app_container(render(target))
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause >= 3
    graceful_timeout = 20  # `python -m service serve --graceful-timeout` default
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] >= pause + graceful_timeout + 5


@ALL_TARGETS
def test_migrations_run_in_an_init_container_of_the_same_image(target: str) -> None:
    resources = render(target)
    spec = pod_spec(app_deployment(resources))
    server = app_container(resources)
    (migrate,) = spec["initContainers"]
    assert migrate["command"] + migrate["args"] == ["python", "-m", "service", "migrate"]
    assert server["command"] + server["args"] == ["python", "-m", "service", "serve"]
    assert migrate["image"] == server["image"]
    assert migrate["envFrom"] == server["envFrom"]


@ALL_TARGETS
def test_tmp_is_the_one_writable_path_and_serve_picks_the_metrics_dir(target: str) -> None:
    """`serve` makes a fresh PROMETHEUS_MULTIPROC_DIR under /tmp; a preset one would keep stale samples."""
    resources = render(target)
    spec = pod_spec(app_deployment(resources))
    emptydirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    for container in all_containers(spec):
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get("/tmp") in emptydirs, container["name"]
        assert "PROMETHEUS_MULTIPROC_DIR" not in container_environment(resources, container)


# --- selectors, references, scaling -------------------------------------------


@ALL_TARGETS
def test_selectors_pick_the_linkgate_pods(target: str) -> None:
    resources = render(target)
    labels = app_deployment(resources)["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    assert selects(app_deployment(resources)["spec"]["selector"]["matchLabels"])
    assert selects(one(resources, "Service", APP_NAME)["spec"]["selector"])
    assert selects(one(resources, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects(one(resources, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"])
    target_ref = one(resources, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target_ref["kind"], target_ref["name"]) == ("Deployment", APP_NAME)


@EACH_OVERLAY
def test_every_referenced_configmap_and_secret_is_rendered_or_documented(overlay: str) -> None:
    resources = render(overlay)
    present = {(r["kind"], r["metadata"]["name"]) for r in resources}
    # The prod Secret is created out of band (secret.example.yaml); TLS comes
    # from the cluster's certificate manager.
    external = {("Secret", "linkgate-secrets"), ("Secret", "linkgate-tls")} if overlay == "prod" else set()
    referenced = set()
    for workload in of_kind(resources, "Deployment") + of_kind(resources, "StatefulSet"):
        spec = pod_spec(workload)
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                referenced.add(("Secret", volume["secret"]["secretName"]))
        for container in all_containers(spec):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    referenced.add(("ConfigMap", source["configMapRef"]["name"]))
                if "secretRef" in source:
                    referenced.add(("Secret", source["secretRef"]["name"]))
    for ingress in of_kind(resources, "Ingress"):
        referenced |= {("Secret", tls["secretName"]) for tls in ingress["spec"].get("tls", [])}
    assert referenced - present <= external, sorted(referenced - present - external)


def test_prod_commits_no_secret() -> None:
    assert not of_kind(render("prod"), "Secret")


def test_prod_template_holds_only_placeholders() -> None:
    for key, value in secret_data(app_secret("prod")).items():
        assert "CHANGE-ME" in value, key


def test_prod_runs_three_or_more_replicas_spread_across_zones() -> None:
    resources = render("prod")
    hpa = one(resources, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] >= 3
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
    constraints = pod_spec(app_deployment(resources))["topologySpreadConstraints"]
    zone = [c for c in constraints if c["topologyKey"] == "topology.kubernetes.io/zone"]
    assert zone and zone[0]["maxSkew"] == 1


def test_prod_public_base_url_and_ingress_host_agree() -> None:
    resources = render("prod")
    environment = container_environment(resources, app_container(resources))
    host = urlsplit(environment["LINKGATE_PUBLIC_BASE_URL"]).hostname
    ingress = one(resources, "Ingress")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [host]
    assert [h for tls in ingress["spec"]["tls"] for h in tls["hosts"]] == [host]


def test_dev_runs_its_own_postgres_and_redis_with_volumes() -> None:
    resources = render("dev")
    for name, port in (("postgres", 5432), ("redis", 6379)):
        statefulset = one(resources, "StatefulSet", name)
        assert statefulset["spec"]["replicas"] == 1
        assert statefulset["spec"]["volumeClaimTemplates"]
        service = one(resources, "Service", name)
        assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
        assert [p["port"] for p in service["spec"]["ports"]] == [port]


def test_dev_linkgate_reaches_the_in_cluster_postgres_and_redis_with_the_right_password() -> None:
    resources = render("dev")
    secrets = secret_data(app_secret("dev"))
    postgres_env = secret_data(one(resources, "Secret", "postgres-dev"))
    database = urlsplit(secrets["linkgate_database_url"])
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert database.username == postgres_env["POSTGRES_USER"]
    assert database.password == postgres_env["POSTGRES_PASSWORD"]
    assert database.path == "/" + postgres_env["POSTGRES_DB"]
    cache = urlsplit(secrets["linkgate_redis_url"])
    assert (cache.hostname, cache.port) == ("redis", 6379)


# --- the image -------------------------------------------------------------------


def image_entry(target: str) -> dict:
    entries = [e for e in kustomization(target).get("images", []) if e["name"] == IMAGE_PLACEHOLDER]
    assert len(entries) == 1, f"{target}: one `images:` entry for {IMAGE_PLACEHOLDER!r}"
    return entries[0]


@ALL_TARGETS
def test_kustomize_names_the_one_image(target: str) -> None:
    """The base names it exactly; an overlay may put a registry in front (docs/deploy.md)."""
    name = image_entry(target)["newName"]
    assert name == IMAGE or (target != "base" and name.endswith("/" + IMAGE)), name


@ALL_TARGETS
def test_linkgate_containers_run_the_linkgate_image_at_a_release_tag(target: str) -> None:
    entry = image_entry(target)
    spec = pod_spec(app_deployment(render(target)))
    assert {c["image"] for c in all_containers(spec)} == {f"{entry['newName']}:{entry['newTag']}"}
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", str(entry["newTag"])), "pin a release tag, never latest"


@ALL_TARGETS
def test_the_server_reads_its_roles_from_the_mounted_authz_config_map(target: str) -> None:
    resources = render(target)
    spec = pod_spec(app_deployment(resources))
    container = app_container(resources)
    policy_file = container_environment(resources, container)["LINKGATE_AUTHZ_POLICY_FILE"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == "authz")
    config_map = one(resources, "ConfigMap", "linkgate-authz")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert policy_file == f"{mounts['authz']}/policy.csv"
    assert "policy.csv" in config_map["data"]


def test_the_manifests_start_from_the_policy_the_package_ships() -> None:
    from pathlib import Path

    from service.access.policy import SHIPPED_POLICY

    copy = Path(__file__).parents[2] / "deploy" / "k8s" / "base" / "authz" / "policy.csv"
    assert copy.read_text() == SHIPPED_POLICY.read_text()


# --- the visit consumer ---------------------------------------------------------

CONSUMER = "linkgate-visits"


def consumer_deployment(resources: list) -> dict:
    return one(resources, "Deployment", CONSUMER)


@ALL_TARGETS
def test_the_visit_consumer_runs_the_server_image_with_its_settings_and_secrets(target: str) -> None:
    resources = render(target)
    server_spec = pod_spec(app_deployment(resources))
    spec = pod_spec(consumer_deployment(resources))
    (container,) = spec["containers"]
    server = app_container(resources)
    assert container["command"] + container["args"] == ["python", "-m", "service", "consume-visits"]
    assert container["image"] == server["image"]
    assert container["envFrom"] == server["envFrom"]
    assert container_environment(resources, container)["LINKGATE_SECRETS_DIR"] == SECRET_MOUNT
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    server_volumes = {v["name"]: v for v in server_spec["volumes"]}
    assert volumes[mounts[SECRET_MOUNT]] == server_volumes["secrets"]
    assert spec["securityContext"] == server_spec["securityContext"]
    assert container["securityContext"] == server["securityContext"]
    assert spec["serviceAccountName"] == server_spec["serviceAccountName"]
    # It serves no HTTP, so there is nothing for a probe to ask (visit-consumer.yaml says why).
    assert not {"ports", "livenessProbe", "readinessProbe", "startupProbe"} & set(container)


@ALL_TARGETS
def test_the_servers_leave_folding_visits_to_the_consumer_deployment(target: str) -> None:
    resources = render(target)
    environment = container_environment(resources, app_container(resources))
    assert environment["LINKGATE_VISITS_CONSUMER_IN_PROCESS"] == "false"
    assert consumer_deployment(resources)["spec"]["replicas"] >= 2


@ALL_TARGETS
def test_the_network_policy_covers_the_visit_consumers_too(target: str) -> None:
    resources = render(target)
    labels = consumer_deployment(resources)["spec"]["template"]["metadata"]["labels"]
    selector = one(resources, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
    assert all(labels.get(k) == v for k, v in selector.items())
