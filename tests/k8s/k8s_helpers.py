"""Shared helpers for the tests of the Kubernetes manifests in k8s/.

Everything here is read-only with respect to the repository: the manifests are
parsed, never rewritten. The podman end-to-end test works on deep copies.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "k8s"
# Optional objects applied on their own (`kubectl apply -f k8s/autoscaling/`):
# `kubectl apply -f k8s/` does not descend into subdirectories.
AUTOSCALING_DIR = K8S_DIR / "autoscaling"
COMPOSE_FILE = REPO_ROOT / "compose.yaml"

NAMESPACE = "wasm-jwt"
SECRET_NAME = "signing-key"
SECRET_KEY = "KEY"
SECRET_KEY_PREVIOUS = "KEY_PREVIOUS"  # optional: set only while rotating the key
SECRET_KEY_NEXT = "KEY_NEXT"  # optional: EdDSA/ES256, published before it signs
TOKEN_SETTINGS = "token-settings"  # the ConfigMap every program reads TOKEN_ALG from
KEY_DIR = "/usr/share/key"
INIT_CONTAINER = "keycreator"
RUNTIME_UID = 65532

# What the services are expected to look like (from the system description).
EXPECTED_APPS = {
    # Deployment name: (app container name, port, replicas)
    "creator": ("creator", 8000, 2),
    "verifier": ("verifier", 5000, 3),
}

# The runner drains in-flight requests for up to this long on SIGTERM
# (its --shutdown-timeout default); the pods' grace period must cover it.
RUNNER_SHUTDOWN_TIMEOUT_S = 10
# The runner's --metrics-addr port in the images (docker/Dockerfile).
METRICS_PORT = 9090

RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)

# Kinds that live in a namespace (everything we ship except the Namespace).
CLUSTER_SCOPED_KINDS = {"Namespace"}


@dataclasses.dataclass(frozen=True)
class Doc:
    """One YAML document of a manifest file."""

    path: Path
    index: int  # position inside its file
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.body["kind"]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    def __str__(self) -> str:  # used in assertion messages and test ids
        return f"{self.path.name}#{self.index}:{self.kind}/{self.name}"


def manifest_files(directory: Path = K8S_DIR) -> list[Path]:
    """The files `kubectl apply -f <directory>` would read, in the order it reads them."""
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix in {".yaml", ".yml", ".json"}
    )


def load_docs(directory: Path = K8S_DIR) -> list[Doc]:
    """All non-empty documents of all manifest files, in apply order."""
    docs = []
    for path in manifest_files(directory):
        with path.open() as f:
            bodies = [b for b in yaml.safe_load_all(f) if b is not None]
        docs.extend(Doc(path, i, b) for i, b in enumerate(bodies))
    return docs


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.kind == kind]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d.kind == kind and d.name == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def all_containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def selector_matches(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(match_labels) and all(labels.get(k) == v for k, v in match_labels.items())


def label_selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions); the
    empty selector matches everything, as it does for a NetworkPolicy."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def resolve_port(container: dict[str, Any], port: int | str) -> int | None:
    """Container port number that `port` (a number or a port name) refers to."""
    for p in container.get("ports", []):
        if port == p.get("name") or port == p["containerPort"]:
            return p["containerPort"]
    return None


def compose_images() -> dict[str, str]:
    """service name -> image of compose.yaml (only services that name an image),
    as compose resolves it with none of its variables set: `${VAR:-default}`
    becomes `default`."""
    with COMPOSE_FILE.open() as f:
        compose = yaml.safe_load(f)
    return {
        name: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", svc["image"])
        for name, svc in (compose.get("services") or {}).items()
        if isinstance(svc, dict) and "image" in svc
    }


def deep_copy(body: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(body)
