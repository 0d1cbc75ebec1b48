"""Structural checks of the manifests in k8s/ (parsed with PyYAML).

Schema validation (test_k8s_schema.py) proves the manifests are well-formed;
these tests prove they describe the system we want: the right replicas, the
key flow (Secret -> init container -> read-only memory volume), ports that
line up, the "restricted" Pod Security profile, resources, labels, etc.
"""

from __future__ import annotations

import re

import pytest
import yaml

from k8s_helpers import (
    COMPOSE_FILE,
    EXPECTED_APPS,
    INIT_CONTAINER,
    K8S_DIR,
    KEY_DIR,
    METRICS_PORT,
    NAMESPACE,
    RECOMMENDED_LABELS,
    RUNNER_SHUTDOWN_TIMEOUT_S,
    RUNTIME_UID,
    SECRET_KEY,
    SECRET_KEY_NEXT,
    SECRET_KEY_PREVIOUS,
    SECRET_NAME,
    TOKEN_SETTINGS,
    CLUSTER_SCOPED_KINDS,
    all_containers,
    by_kind,
    compose_images,
    label_selector_matches,
    load_docs,
    manifest_files,
    one,
    pod_spec,
    resolve_port,
    selector_matches,
)

DOCS = load_docs()
DEPLOYMENTS = by_kind(DOCS, "Deployment")
APP_NAMES = sorted(EXPECTED_APPS)


def deployment(name: str) -> dict:
    return one(DOCS, "Deployment", name).body


def app_container(name: str) -> dict:
    container_name = EXPECTED_APPS[name][0]
    containers = [c for c in pod_spec(deployment(name))["containers"] if c["name"] == container_name]
    assert len(containers) == 1, f"{name}: expected one container named {container_name}"
    return containers[0]


def init_container(name: str) -> dict:
    inits = pod_spec(deployment(name)).get("initContainers", [])
    assert [c["name"] for c in inits] == [INIT_CONTAINER], (
        f"{name}: expected exactly the init container {INIT_CONTAINER}"
    )
    return inits[0]


def containers_of(name: str) -> list[dict]:
    return list(all_containers(pod_spec(deployment(name))))


def container_ids():
    return [
        pytest.param(app, c["name"], id=f"{app}/{c['name']}")
        for app in APP_NAMES
        for c in containers_of(app)
    ]


def get_container(app: str, container_name: str) -> dict:
    return next(c for c in containers_of(app) if c["name"] == container_name)


# --------------------------------------------------------------------------
# Files, ordering, kinds, namespace
# --------------------------------------------------------------------------


def test_plain_manifests_only():
    # The one subdirectory holds the optional autoscalers (test_k8s_autoscaling.py).
    assert sorted(p.name for p in K8S_DIR.iterdir() if p.is_dir()) == ["autoscaling"]
    names = sorted(p.name for p in K8S_DIR.iterdir() if p.is_file())
    assert "kustomization.yaml" not in names and "kustomization.yml" not in names
    assert "Chart.yaml" not in names
    # The kustomize base (test_k8s_kustomize.py): no extension, so that
    # `kubectl apply -f k8s/` does not read it.
    names.remove("Kustomization")
    for name in names:
        assert re.fullmatch(r"\d\d-[a-z0-9-]+\.yaml", name), (
            f"k8s/{name}: expected NN-name.yaml so `kubectl apply -f k8s/` order is explicit"
        )


def test_expected_objects_exist():
    kinds = sorted((d.kind, d.name) for d in DOCS)
    for app in APP_NAMES:
        for kind in ("Deployment", "Service", "PodDisruptionBudget"):
            assert (kind, app) in kinds, f"missing {kind}/{app}"
    assert ("Namespace", NAMESPACE) in kinds
    assert ("Secret", SECRET_NAME) in kinds
    assert by_kind(DOCS, "NetworkPolicy"), "no NetworkPolicy"
    assert len(set(kinds)) == len(kinds), "duplicate kind/name"


def test_namespace_is_applied_first():
    first = DOCS[0]
    assert first.kind == "Namespace" and first.name == NAMESPACE, f"first object is {first}"
    assert first.path == manifest_files()[0]
    assert len(by_kind(DOCS, "Namespace")) == 1


def test_secret_is_applied_before_the_workloads():
    order = [d.kind for d in DOCS]
    assert order.index("Secret") < min(i for i, k in enumerate(order) if k == "Deployment")


@pytest.mark.parametrize("doc", [d for d in DOCS if d.kind not in CLUSTER_SCOPED_KINDS], ids=str)
def test_namespaced_objects_set_the_namespace(doc):
    assert doc.body["metadata"].get("namespace") == NAMESPACE


def test_namespace_enforces_restricted_pod_security():
    labels = one(DOCS, "Namespace", NAMESPACE).body["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels.get(f"pod-security.kubernetes.io/{mode}") == "restricted", mode
        version = labels.get(f"pod-security.kubernetes.io/{mode}-version")
        assert version == "latest" or re.fullmatch(r"v1\.\d+", version or ""), (mode, version)


# --------------------------------------------------------------------------
# Secret and key flow
# --------------------------------------------------------------------------


def secret_keys() -> set[str]:
    body = one(DOCS, "Secret", SECRET_NAME).body
    return set(body.get("data") or {}) | set(body.get("stringData") or {})


def test_secret_is_an_obvious_placeholder():
    body = one(DOCS, "Secret", SECRET_NAME).body
    assert body.get("type") == "Opaque"
    assert secret_keys() == {SECRET_KEY}
    value = (body.get("stringData") or {}).get(SECRET_KEY)
    assert value is not None, "keep the placeholder readable: use stringData"
    assert value.startswith("CHANGE-ME"), f"placeholder must be clearly marked, got {value!r}"


@pytest.mark.parametrize("app", APP_NAMES)
def test_replicas(app):
    assert deployment(app)["spec"]["replicas"] == EXPECTED_APPS[app][2]


@pytest.mark.parametrize("app", APP_NAMES)
def test_init_container_gets_key_from_the_secret(app):
    init = init_container(app)
    assert init["image"].split("/")[-1].startswith(f"{INIT_CONTAINER}:")
    env = {e["name"]: e for e in init.get("env", [])}
    assert SECRET_KEY in env, "keycreator needs env KEY"
    ref = env[SECRET_KEY].get("valueFrom", {}).get("secretKeyRef")
    assert ref, "KEY must come from a secretKeyRef, never a literal value"
    assert ref["name"] == SECRET_NAME and one(DOCS, "Secret", ref["name"])
    assert ref["key"] in secret_keys(), f"Secret {SECRET_NAME} has no key {ref['key']}"
    assert not ref.get("optional"), "a missing key must keep the pod from starting"
    assert not init.get("envFrom")


@pytest.mark.parametrize("app", APP_NAMES)
def test_init_container_gets_the_optional_previous_key(app):
    """Key rotation: KEY_PREVIOUS comes from the same Secret, optional, so a
    Secret without it (the usual case) still starts the pods."""
    env = {e["name"]: e for e in init_container(app).get("env", [])}
    assert SECRET_KEY_PREVIOUS in env, "keycreator needs env KEY_PREVIOUS for rotation"
    ref = env[SECRET_KEY_PREVIOUS].get("valueFrom", {}).get("secretKeyRef")
    assert ref, "KEY_PREVIOUS must come from a secretKeyRef, never a literal value"
    assert (ref["name"], ref["key"]) == (SECRET_NAME, SECRET_KEY_PREVIOUS)
    assert ref.get("optional") is True, "the Secret holds KEY_PREVIOUS only while rotating"


@pytest.mark.parametrize("app", APP_NAMES)
def test_init_container_gets_the_optional_next_key(app):
    """EdDSA/ES256 rotation publishes the next key before it signs: KEY_NEXT,
    from the same Secret, optional like KEY_PREVIOUS."""
    env = {e["name"]: e for e in init_container(app).get("env", [])}
    ref = env[SECRET_KEY_NEXT].get("valueFrom", {}).get("secretKeyRef")
    assert ref, "KEY_NEXT must come from a secretKeyRef, never a literal value"
    assert (ref["name"], ref["key"]) == (SECRET_NAME, SECRET_KEY_NEXT)
    assert ref.get("optional") is True, "the Secret holds KEY_NEXT only while rotating"


def test_token_settings_configmap_defaults_to_the_reference_behaviour():
    """One ConfigMap, applied before the workloads, with the defaults compose
    has: HS256, five-minute tokens, no iss/aud."""
    settings = one(DOCS, "ConfigMap", TOKEN_SETTINGS).body["data"]
    assert settings == {
        "TOKEN_ALG": "HS256",
        "TOKEN_TTL_SECONDS": "300",
        "TOKEN_ISSUER": "",
        "TOKEN_AUDIENCE": "",
        "JWKS_MAX_AGE_SECONDS": "300",
    }
    order = [d.kind for d in DOCS]
    assert order.index("ConfigMap") < min(i for i, k in enumerate(order) if k == "Deployment")
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, value in compose["x-token-settings"].items():
        assert value.endswith(f":-{settings[name]}}}"), f"compose default of {name}: {value}"


def config_refs(container: dict) -> dict[str, str]:
    """Environment variable -> ConfigMap key, for those taken from token-settings;
    fails on a literal value for a token setting."""
    refs = {}
    for e in container.get("env", []):
        ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            assert ref["name"] == TOKEN_SETTINGS and not ref.get("optional"), e
            refs[e["name"]] = ref["key"]
        else:
            assert not e["name"].startswith(("TOKEN_", "JWKS_")), f"{e['name']}: a literal value"
    return refs


@pytest.mark.parametrize("app", APP_NAMES)
def test_every_program_reads_the_algorithm_from_the_one_configmap(app):
    """keycreator and the service must agree on TOKEN_ALG: both read it from
    token-settings, never from a literal that could differ."""
    wanted = {"TOKEN_ALG", "TOKEN_ISSUER", "TOKEN_AUDIENCE", "JWKS_MAX_AGE_SECONDS"}
    if app == "creator":
        wanted.add("TOKEN_TTL_SECONDS")
    assert config_refs(app_container(app)) == {name: name for name in wanted}
    assert config_refs(init_container(app)) == {"TOKEN_ALG": "TOKEN_ALG"}


@pytest.mark.parametrize("app", APP_NAMES)
def test_init_container_writes_the_keys_of_its_role(app):
    """KEYS_FOR=verifier: public keys only, so no verifier pod can sign."""
    env = {e["name"]: e for e in init_container(app).get("env", [])}
    assert env["KEYS_FOR"] == {"name": "KEYS_FOR", "value": app}


@pytest.mark.parametrize("app", APP_NAMES)
def test_app_containers_cannot_see_the_secret(app):
    spec = pod_spec(deployment(app))
    for container in spec["containers"]:
        names = {e["name"] for e in container.get("env", [])}
        for secret in (SECRET_KEY, SECRET_KEY_PREVIOUS):
            assert secret not in names, f"{container['name']} must not see {secret}"
        assert not container.get("envFrom"), f"{container['name']}: no envFrom"
        for e in container.get("env", []):
            assert "secretKeyRef" not in (e.get("valueFrom") or {}), container["name"]
    for volume in spec.get("volumes", []):
        assert "secret" not in volume and "projected" not in volume, volume["name"]


@pytest.mark.parametrize("app", APP_NAMES)
def test_key_volume_is_shared_memory_emptydir_readonly_in_app(app):
    spec = pod_spec(deployment(app))
    init_mounts = [m for m in init_container(app).get("volumeMounts", []) if m["mountPath"] == KEY_DIR]
    app_mounts = [m for m in app_container(app).get("volumeMounts", []) if m["mountPath"] == KEY_DIR]
    assert len(init_mounts) == 1 and len(app_mounts) == 1, f"both containers mount {KEY_DIR}"
    init_mount, app_mount = init_mounts[0], app_mounts[0]
    assert init_mount["name"] == app_mount["name"], "init and app must share the volume"
    assert not init_mount.get("readOnly"), "keycreator writes the key file"
    assert app_mount.get("readOnly") is True, "the app must mount the key read-only"
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    empty_dir = volumes[app_mount["name"]].get("emptyDir")
    assert empty_dir is not None, "key volume must be an emptyDir"
    assert empty_dir.get("medium") == "Memory", "key must never touch the node's disk"
    assert empty_dir.get("sizeLimit"), "bound the tmpfs size"


# --------------------------------------------------------------------------
# Images (must match compose.yaml)
# --------------------------------------------------------------------------


def manifest_images() -> set[str]:
    return {c["image"] for app in APP_NAMES for c in containers_of(app)}


@pytest.mark.parametrize("app", APP_NAMES)
def test_images_are_pinned_and_pulled_if_not_present(app):
    for c in containers_of(app):
        image = c["image"]
        assert re.fullmatch(r"wasm-jwt/[a-z]+:\d+\.\d+\.\d+", image), image
        assert c.get("imagePullPolicy") == "IfNotPresent", c["name"]
    version = deployment(app)["metadata"]["labels"]["app.kubernetes.io/version"]
    assert app_container(app)["image"].endswith(f":{version}"), "version label != image tag"


def test_images_match_compose():
    assert COMPOSE_FILE.exists(), (
        f"{COMPOSE_FILE.name} not found: the k8s manifests must use the same images as compose"
    )
    expected = set(compose_images().values())
    assert expected, "compose.yaml names no images"
    assert manifest_images() == expected, (
        f"k8s images {sorted(manifest_images())} != compose images {sorted(expected)}"
    )


# --------------------------------------------------------------------------
# Ports, Services, probes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("app", APP_NAMES)
def test_container_port(app):
    ports = app_container(app).get("ports", [])
    assert [(p.get("name"), p["containerPort"], p.get("protocol", "TCP")) for p in ports] == [
        ("http", EXPECTED_APPS[app][1], "TCP"),
        ("metrics", METRICS_PORT, "TCP"),
    ]
    for p in ports:
        assert "hostPort" not in p and "hostIP" not in p, "no host ports in the real manifests"


@pytest.mark.parametrize("app", APP_NAMES)
def test_service_targets_the_app_port(app):
    svc = one(DOCS, "Service", app).body
    spec = svc["spec"]
    assert spec.get("type") == "NodePort"
    selected = [
        d.name
        for d in DEPLOYMENTS
        if selector_matches(spec["selector"], d.body["spec"]["template"]["metadata"]["labels"])
    ]
    assert selected == [app], f"Service {app} selects {selected}"
    container = app_container(app)
    port = EXPECTED_APPS[app][1]
    assert len(spec["ports"]) == 1
    for p in spec["ports"]:
        assert "nodePort" not in p, "let the cluster allocate the nodePort"
        assert p["port"] == port
        assert p.get("protocol", "TCP") == "TCP"
        assert isinstance(p["targetPort"], str), "target the named container port"
        assert resolve_port(container, p["targetPort"]) == port


@pytest.mark.parametrize("app", APP_NAMES)
def test_probes(app):
    container = app_container(app)
    expected_paths = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe_name, path in expected_paths.items():
        probe = container.get(probe_name)
        assert probe, f"{app}: {probe_name} missing"
        http = probe.get("httpGet")
        assert http, f"{app}: {probe_name} must be an httpGet probe"
        assert http["path"] == path
        assert resolve_port(container, http["port"]) == EXPECTED_APPS[app][1], (
            f"{app}: {probe_name} probes a port the container does not expose"
        )
    # The startup probe must give the pod enough time; afterwards the liveness
    # probe must not kill a pod that is merely slow for a moment.
    startup = container["startupProbe"]
    assert startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) >= 10
    liveness = container["livenessProbe"]
    assert liveness.get("failureThreshold", 3) >= 3


@pytest.mark.parametrize("app", APP_NAMES)
def test_graceful_shutdown_fits_the_runner_drain(app):
    spec = pod_spec(deployment(app))
    pre_stop = (app_container(app).get("lifecycle") or {}).get("preStop") or {}
    assert "exec" not in pre_stop, "the image has no shell or sleep binary"
    pre_stop_s = (pre_stop.get("sleep") or {}).get("seconds", 0)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    assert grace > pre_stop_s + RUNNER_SHUTDOWN_TIMEOUT_S, (
        f"{app}: grace {grace}s must exceed preStop {pre_stop_s}s + drain {RUNNER_SHUTDOWN_TIMEOUT_S}s"
    )
    assert grace <= 30, "do not stall rollouts and node drains"


# --------------------------------------------------------------------------
# Pod security ("restricted"), service account, resources
# --------------------------------------------------------------------------

RESTRICTED_CONTAINER_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": RUNTIME_UID,
    "runAsGroup": RUNTIME_UID,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.mark.parametrize("app,container_name", container_ids())
def test_container_security_context_is_restricted(app, container_name):
    ctx = get_container(app, container_name).get("securityContext") or {}
    for field, expected in RESTRICTED_CONTAINER_CONTEXT.items():
        assert ctx.get(field) == expected, f"{field}: {ctx.get(field)!r} != {expected!r}"
    assert not ctx.get("privileged")
    assert not ctx.get("capabilities", {}).get("add")


@pytest.mark.parametrize("app", APP_NAMES)
def test_pod_security_context(app):
    spec = pod_spec(deployment(app))
    ctx = spec.get("securityContext") or {}
    assert ctx.get("runAsNonRoot") is True
    assert ctx.get("runAsUser") == RUNTIME_UID
    assert ctx.get("runAsGroup") == RUNTIME_UID
    assert ctx.get("fsGroup") == RUNTIME_UID, "fsGroup makes the emptyDir writable for keycreator"
    assert ctx.get("seccompProfile") == {"type": "RuntimeDefault"}
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(forbidden), forbidden
    for volume in spec.get("volumes", []):
        assert "hostPath" not in volume, volume["name"]


@pytest.mark.parametrize("app", APP_NAMES)
def test_no_service_account_token(app):
    assert pod_spec(deployment(app)).get("automountServiceAccountToken") is False


def _quantity(value) -> float:
    """Parse a cpu/memory quantity (enough of the grammar for these manifests)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]*)", str(value))
    assert m and m.group(2) in units.keys() | {""}, f"unexpected quantity {value!r}"
    return float(m.group(1)) * units.get(m.group(2), 1)


@pytest.mark.parametrize("app,container_name", container_ids())
def test_resources(app, container_name):
    resources = get_container(app, container_name).get("resources") or {}
    for resource in ("cpu", "memory"):
        request = resources.get("requests", {}).get(resource)
        limit = resources.get("limits", {}).get(resource)
        assert request and limit, f"{resource}: requests and limits are required"
        assert _quantity(request) <= _quantity(limit), f"{resource}: request > limit"


# --------------------------------------------------------------------------
# Labels, rollout, spreading, disruption budgets
# --------------------------------------------------------------------------


@pytest.mark.parametrize("doc", [d for d in DOCS if d.kind in ("Deployment", "Service", "PodDisruptionBudget")], ids=str)
def test_recommended_labels(doc):
    labels = doc.body["metadata"].get("labels") or {}
    for label in RECOMMENDED_LABELS:
        assert labels.get(label), f"missing label {label}"
    assert labels["app.kubernetes.io/part-of"] == "wasm-jwt"
    assert labels["app.kubernetes.io/name"] == doc.name


@pytest.mark.parametrize("doc", DOCS, ids=str)
def test_every_object_is_part_of_the_app(doc):
    labels = doc.body["metadata"].get("labels") or {}
    assert labels.get("app.kubernetes.io/part-of") == "wasm-jwt"
    assert labels.get("app.kubernetes.io/managed-by")


@pytest.mark.parametrize("app", APP_NAMES)
def test_pod_template_labels_and_selector(app):
    dep = deployment(app)
    template_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert template_labels == dep["metadata"]["labels"]
    selector = dep["spec"]["selector"]
    assert set(selector) == {"matchLabels"}
    assert selector_matches(selector["matchLabels"], template_labels)
    assert "app.kubernetes.io/version" not in selector["matchLabels"], (
        "the selector is immutable: it must not contain labels that change"
    )
    # No other Deployment's pods may match this selector.
    others = [d.name for d in DEPLOYMENTS if d.name != app and selector_matches(
        selector["matchLabels"], d.body["spec"]["template"]["metadata"]["labels"])]
    assert not others


@pytest.mark.parametrize("app", APP_NAMES)
def test_rollout_settings(app):
    spec = deployment(app)["spec"]
    assert spec.get("strategy", {}).get("type") == "RollingUpdate"
    assert 1 <= spec.get("revisionHistoryLimit", 10) <= 10
    assert spec["strategy"].get("rollingUpdate", {}).get("maxUnavailable", 1) in (0, "0%")


@pytest.mark.parametrize("app", APP_NAMES)
def test_soft_spreading(app):
    spec = pod_spec(deployment(app))
    selector = deployment(app)["spec"]["selector"]["matchLabels"]
    constraints = spec.get("topologySpreadConstraints", [])
    anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
    assert constraints or anti.get("preferredDuringSchedulingIgnoredDuringExecution"), (
        "spread replicas across nodes"
    )
    topology_keys = set()
    for c in constraints:
        assert c["whenUnsatisfiable"] == "ScheduleAnyway", "must stay schedulable on one node"
        assert c["labelSelector"]["matchLabels"] == selector
        topology_keys.add(c["topologyKey"])
    assert not anti.get("requiredDuringSchedulingIgnoredDuringExecution"), (
        "hard anti-affinity would leave replicas pending on a single-node minikube"
    )
    assert "kubernetes.io/hostname" in topology_keys


@pytest.mark.parametrize("app", APP_NAMES)
def test_pod_disruption_budget(app):
    pdb = one(DOCS, "PodDisruptionBudget", app).body["spec"]
    dep = deployment(app)
    assert pdb["selector"] == {"matchLabels": dep["spec"]["selector"]["matchLabels"]}
    replicas = dep["spec"]["replicas"]
    assert ("minAvailable" in pdb) != ("maxUnavailable" in pdb), "exactly one of them"
    if "maxUnavailable" in pdb:
        assert pdb["maxUnavailable"] == 1
    else:
        assert 1 <= pdb["minAvailable"] < replicas, "must leave room for voluntary evictions"


# --------------------------------------------------------------------------
# Network policies
# --------------------------------------------------------------------------


def network_policies() -> list[dict]:
    return [d.body for d in by_kind(DOCS, "NetworkPolicy")]


def test_namespace_default_deny_both_directions():
    deny = [
        np for np in network_policies()
        if np["spec"]["podSelector"] == {}
        and set(np["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not np["spec"].get("ingress")
        and not np["spec"].get("egress")
    ]
    assert deny, "need a default-deny policy selecting all pods for Ingress and Egress"


OTLP_RULE = {
    "to": [{"namespaceSelector": {"matchLabels": {"wasm-jwt/otel-collector": "true"}}}],
    "ports": [{"protocol": "TCP", "port": 4318}],
}
DNS_RULE = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def test_egress_reaches_only_a_labelled_trace_collector_and_the_cluster_dns():
    # The services call nothing but a trace collector (OTLP/HTTP, when
    # tracing is on), whose name the cluster DNS resolves.
    egress = [(np["metadata"]["name"], np["spec"]["podSelector"], np["spec"]["egress"])
              for np in network_policies() if np["spec"].get("egress")]
    assert len(egress) == 1, egress
    _, selector, rules = egress[0]
    for app in APP_NAMES:
        labels = deployment(app)["spec"]["template"]["metadata"]["labels"]
        assert label_selector_matches(selector, labels), app
    assert rules == [OTLP_RULE, DNS_RULE]


def ingress_rules(app: str) -> list[dict]:
    labels = deployment(app)["spec"]["template"]["metadata"]["labels"]
    return [
        (np["metadata"]["name"], rule)
        for np in network_policies()
        if label_selector_matches(np["spec"]["podSelector"], labels)
        for rule in np["spec"].get("ingress", [])
    ]


@pytest.mark.parametrize("app", APP_NAMES)
def test_ingress_allowed_only_on_the_service_and_metrics_ports(app):
    container = app_container(app)
    allowed = set()
    for name, rule in ingress_rules(app):
        assert rule.get("ports"), f"{name}: a rule without ports admits all ports"
        for p in rule["ports"]:
            assert p.get("protocol", "TCP") == "TCP"
            allowed.add(resolve_port(container, p["port"]))
    assert allowed == {EXPECTED_APPS[app][1], METRICS_PORT}, f"{app}: ingress admitted on {allowed}"


@pytest.mark.parametrize("app", APP_NAMES)
def test_metrics_are_scrapable_only_from_monitoring_namespaces(app):
    container = app_container(app)
    metrics_rules = [
        (name, rule) for name, rule in ingress_rules(app)
        if any(resolve_port(container, p["port"]) == METRICS_PORT for p in rule["ports"])
    ]
    assert metrics_rules, f"{app}: no policy admits the metrics port"
    for name, rule in metrics_rules:
        sources = rule.get("from")
        assert sources, f"{name}: the metrics port must not be open to everyone"
        for source in sources:
            assert source.get("namespaceSelector", {}).get("matchLabels") == {
                "wasm-jwt/metrics-scraper": "true"
            }, f"{name}: {source}"
            assert "ipBlock" not in source
        # The API port stays in its own rule: a scraper gets metrics only.
        assert {resolve_port(container, p["port"]) for p in rule["ports"]} == {METRICS_PORT}


@pytest.mark.parametrize("app", APP_NAMES)
def test_pods_carry_scrape_annotations_for_the_metrics_port(app):
    annotations = deployment(app)["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    assert annotations.get("prometheus.io/path") == "/metrics"
    assert resolve_port(app_container(app), int(annotations["prometheus.io/port"])) == METRICS_PORT
