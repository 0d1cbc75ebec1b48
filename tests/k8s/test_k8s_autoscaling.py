"""Structural checks of the optional autoscalers in k8s/autoscaling/.

Schema validation is in test_k8s_schema.py, with the other manifests. Here:
each HPA targets a Deployment that exists, its bounds agree with the
Deployment's replicas and PodDisruptionBudget, it scales on CPU utilization
and every container it measures has a CPU request.
"""

from __future__ import annotations

import copy

import pytest

from k8s_helpers import (
    AUTOSCALING_DIR,
    EXPECTED_APPS,
    NAMESPACE,
    RECOMMENDED_LABELS,
    REPO_ROOT,
    load_docs,
    manifest_files,
    one,
    pod_spec,
)

DOCS = load_docs()
HPAS = load_docs(AUTOSCALING_DIR)
APP_NAMES = sorted(EXPECTED_APPS)


def problems(hpa: dict, docs) -> list[str]:
    """What is wrong with `hpa` given the base manifests `docs` (empty: nothing)."""
    found = []
    spec = hpa["spec"]
    target = spec["scaleTargetRef"]
    if (target.get("apiVersion"), target.get("kind")) != ("apps/v1", "Deployment"):
        return [f"targets {target.get('apiVersion')} {target.get('kind')}, not a Deployment"]
    deployments = [d for d in docs if d.kind == "Deployment" and d.name == target["name"]]
    if len(deployments) != 1:
        return [f"targets Deployment/{target['name']}, which k8s/ does not define"]
    deployment = deployments[0].body
    if deployment["metadata"]["namespace"] != hpa["metadata"].get("namespace"):
        found.append("HPA and Deployment are in different namespaces")

    low, high = spec.get("minReplicas", 1), spec["maxReplicas"]
    replicas = deployment["spec"].get("replicas", 1)
    if not low <= replicas <= high:
        found.append(f"Deployment replicas {replicas} outside [{low}, {high}]: every apply of "
                     "k8s/ would set a count the HPA immediately undoes")
    if low >= high:
        found.append(f"minReplicas {low} >= maxReplicas {high}: nothing to scale")

    # At minReplicas a voluntary eviction must still leave a pod serving, and
    # the PDB must still allow one (else node drains stall).
    pdbs = [d.body["spec"] for d in docs if d.kind == "PodDisruptionBudget"
            and d.body["spec"]["selector"] == deployment["spec"]["selector"]]
    if len(pdbs) != 1:
        found.append(f"expected one PodDisruptionBudget for {target['name']}, found {len(pdbs)}")
    else:
        pdb = pdbs[0]
        floor = pdb.get("minAvailable", 0) + 1 if "minAvailable" in pdb else pdb["maxUnavailable"] + 1
        if low < floor:
            found.append(f"minReplicas {low} < {floor}: at the minimum the PDB leaves no pod "
                         "serving during a drain, or blocks the drain")

    metrics = spec.get("metrics", [])
    cpu = [m for m in metrics if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"]
    if len(cpu) != 1 or len(metrics) != 1:
        found.append(f"expected exactly one metric, CPU: {metrics}")
    else:
        target_value = cpu[0]["resource"]["target"]
        if target_value.get("type") != "Utilization":
            found.append(f"CPU target is {target_value.get('type')}, not Utilization")
        elif not 0 < target_value.get("averageUtilization", 0) <= 100:
            found.append(f"averageUtilization {target_value.get('averageUtilization')} not in (0, 100]")

    # Utilization is usage / request, over the running containers.
    for container in pod_spec(deployment)["containers"]:
        if not (container.get("resources", {}).get("requests", {}).get("cpu")):
            found.append(f"container {container['name']} has no CPU request")
    return found


def hpa(app: str) -> dict:
    return one(HPAS, "HorizontalPodAutoscaler", app).body


def test_one_autoscaler_per_deployment_and_nothing_else():
    assert sorted((d.kind, d.name) for d in HPAS) == [
        ("HorizontalPodAutoscaler", app) for app in APP_NAMES
    ]


def test_kubectl_apply_k8s_does_not_pick_them_up():
    # kubectl apply -f k8s/ reads only the files directly in k8s/.
    assert not [p for p in manifest_files() if p.is_relative_to(AUTOSCALING_DIR)]
    assert not [d for d in DOCS if d.kind == "HorizontalPodAutoscaler"]


@pytest.mark.parametrize("app", APP_NAMES)
def test_autoscaler_is_sound(app):
    body = hpa(app)
    assert body["apiVersion"] == "autoscaling/v2"
    assert body["spec"]["scaleTargetRef"]["name"] == app
    assert problems(body, DOCS) == []


@pytest.mark.parametrize("app", APP_NAMES)
def test_labels_and_namespace(app):
    metadata = hpa(app)["metadata"]
    assert metadata["namespace"] == NAMESPACE
    for label in RECOMMENDED_LABELS:
        assert metadata["labels"].get(label), f"missing label {label}"
    deployment_labels = one(DOCS, "Deployment", app).body["metadata"]["labels"]
    assert metadata["labels"] == deployment_labels


# Negative controls: each rule above can fail.
@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda h, d: h["spec"]["scaleTargetRef"].update(name="nope"), "does not define"),
        (lambda h, d: h["spec"].update(minReplicas=1), "PDB"),
        (lambda h, d: h["spec"].update(maxReplicas=h["spec"]["minReplicas"]), "nothing to scale"),
        (lambda h, d: h["spec"].update(minReplicas=4, maxReplicas=8), "outside"),
        (lambda h, d: h["spec"]["metrics"][0]["resource"].update(name="memory"), "CPU"),
        (lambda h, d: h["spec"]["metrics"][0]["resource"]["target"].update(averageUtilization=0),
         "averageUtilization"),
        (lambda h, d: pod_spec(d)["containers"][0]["resources"]["requests"].pop("cpu"),
         "no CPU request"),
    ],
)
def test_problems_are_found(change, expected):
    body = copy.deepcopy(hpa("creator"))
    docs = copy.deepcopy(DOCS)
    deployment = next(d for d in docs if d.kind == "Deployment" and d.name == "creator").body
    change(body, deployment)
    found = problems(body, docs)
    assert any(expected in problem for problem in found), found


def test_guide_documents_metrics_server_and_how_to_apply():
    guide = (REPO_ROOT / "docs" / "deploy-kubernetes.md").read_text()
    assert "metrics-server" in guide
    assert "kubectl apply -f k8s/autoscaling/" in guide
