"""Strict OpenAPI-schema validation of every manifest in k8s/.

Uses kubernetes-validate (offline, bundled schemas) in strict mode, which
rejects unknown fields (typos such as `readOnlyRootFileSystem` would silently
be dropped by an old API server). Each document is validated against:

* the oldest Kubernetes minor we support (OLDEST_SUPPORTED): the manifests use
  `lifecycle.preStop.sleep` (on by default since 1.30) and PDB
  `unhealthyPodEvictionPolicy`;
* the newest minor the installed kubernetes-validate ships (detected).
"""

from __future__ import annotations

import pytest
from packaging.version import Version

import kubernetes_validate
from kubernetes_validate.utils import all_versions

from k8s_helpers import AUTOSCALING_DIR, Doc, deep_copy, load_docs, one, pod_spec

OLDEST_SUPPORTED = "1.30"


def _minor(version: str) -> str:
    v = Version(version)
    return f"{v.major}.{v.minor}"


def _versions() -> list[str]:
    newest = _minor(kubernetes_validate.latest_version())
    assert Version(newest) >= Version(OLDEST_SUPPORTED), (
        f"kubernetes-validate ships schemas up to {newest} only; need >= {OLDEST_SUPPORTED}"
    )
    return sorted({OLDEST_SUPPORTED, newest}, key=Version)


VERSIONS = _versions()
DOCS = load_docs()
AUTOSCALING_DOCS = load_docs(AUTOSCALING_DIR)


def test_validator_ships_the_versions_we_test():
    shipped = {_minor(v) for v in all_versions()}
    for version in VERSIONS:
        assert version in shipped, f"kubernetes-validate has no schemas for {version}"
    assert len(VERSIONS) == 2, "expected an old and a new version to differ"


def test_there_are_manifests():
    assert DOCS, "no manifests found in k8s/"


def _validate(body: dict, version: str) -> None:
    try:
        kubernetes_validate.validate(body, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        pytest.fail(f"invalid against Kubernetes {version} (strict): {path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        # The CLI only warns here; for us an unknown kind/apiVersion is an error.
        pytest.fail(e.message)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("doc", DOCS + AUTOSCALING_DOCS, ids=str)
def test_manifest_is_valid_strict(doc: Doc, version: str):
    _validate(doc.body, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_validation_rejects_an_unknown_autoscaler_field(version: str):
    # The HPAs are autoscaling/v2, where a v1-style field does not exist.
    body = deep_copy(one(AUTOSCALING_DOCS, "HorizontalPodAutoscaler", "creator").body)
    body["spec"]["targetCPUUtilizationPercentage"] = 70
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(body, version, strict=True)


# Negative controls: prove that the validation above can fail at all, i.e. that
# strict mode is on and the schemas are actually applied to nested objects.
@pytest.mark.parametrize("version", VERSIONS)
def test_strict_validation_rejects_unknown_container_field(version: str):
    body = deep_copy(one(DOCS, "Deployment", "creator").body)
    pod_spec(body)["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(body, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_validation_rejects_wrong_type(version: str):
    body = deep_copy(one(DOCS, "Service", "creator").body)
    body["spec"]["ports"][0]["port"] = "eight-thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(body, version, strict=True)
