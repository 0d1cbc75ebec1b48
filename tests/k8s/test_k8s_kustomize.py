"""k8s/Kustomization: the manifests as a kustomize base, so that an overlay
points them at a registry without editing them (README, "Deploying from a
registry"), while `kubectl apply -f k8s/` stays exactly as it was.

Rendered with `kubectl kustomize`, which works offline. The overlay that
scripts/publish.sh writes (pinned by digest) is rendered, validated and run
from a real registry in tests/registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import test_k8s_schema as schema
from k8s_helpers import K8S_DIR, Doc, all_containers, load_docs, manifest_files, pod_spec

BASE = K8S_DIR / "Kustomization"
REGISTRY = "registry.example.com/team"


def kustomize(directory: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: it renders the kustomize overlays (kubectl kustomize)")
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {directory}:\n{proc.stderr}"
    return [body for body in yaml.safe_load_all(proc.stdout) if body]


def key(body: dict) -> tuple[str, str, str]:
    return body["kind"], body["metadata"].get("namespace", ""), body["metadata"]["name"]


def images(bodies: list[dict]) -> set[str]:
    return {c["image"] for body in bodies if body["kind"] == "Deployment"
            for c in all_containers(pod_spec(body))}


def test_base_lists_exactly_what_kubectl_apply_reads():
    base = yaml.safe_load(BASE.read_text())
    assert base["kind"] == "Kustomization"
    assert base["resources"] == [path.name for path in manifest_files()]


def test_base_renders_the_same_objects_as_the_files():
    rendered = {key(body): body for body in kustomize(K8S_DIR)}
    files = {key(doc.body): doc.body for doc in load_docs()}
    assert rendered == files


def write_overlay(directory: Path, entries: list[str]) -> Path:
    directory.mkdir()
    base = os.path.relpath(K8S_DIR, directory)
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {base}\nimages:\n" + "".join(entries))
    return directory


@pytest.fixture(scope="module")
def tag_overlay(tmp_path_factory) -> list[dict]:
    """The README's overlay for images of a registry, by tag."""
    entries = [f"  - name: wasm-jwt/{name}\n    newName: {REGISTRY}/{name}\n    newTag: \"1.2.3\"\n"
               for name in ("keycreator", "creator", "verifier")]
    return kustomize(write_overlay(tmp_path_factory.mktemp("overlay") / "by-tag", entries))


def test_overlay_points_every_image_at_the_registry(tag_overlay):
    assert images(tag_overlay) == {f"{REGISTRY}/{name}:1.2.3" for name in ("keycreator", "creator", "verifier")}
    # Nothing else changes.
    files = {key(doc.body) for doc in load_docs()}
    assert {key(body) for body in tag_overlay} == files


@pytest.mark.parametrize("version", schema.VERSIONS)
def test_overlay_output_is_valid_strict(tag_overlay, version):
    for body in tag_overlay:
        schema._validate(body, version)


def test_overlay_pins_by_digest(tmp_path):
    digest = "sha256:" + "ab" * 32
    entries = [f"  - name: wasm-jwt/creator\n    newName: {REGISTRY}/creator\n    digest: {digest}\n"]
    rendered = kustomize(write_overlay(tmp_path / "by-digest", entries))
    assert f"{REGISTRY}/creator@{digest}" in images(rendered)
    assert "wasm-jwt/verifier:0.1.0" in images(rendered), "only the named image changes"


def test_kubectl_apply_f_skips_the_base(tmp_path):
    # kubectl apply -f DIR reads *.yaml, *.yml and *.json only (manifest_files
    # mirrors that); the extensionless name keeps the Kustomization out.
    assert BASE not in manifest_files()
    assert all(isinstance(doc, Doc) and doc.kind != "Kustomization" for doc in load_docs())


# --- the overlay scripts/kustomize-overlay.sh writes (publish.sh --kustomize) ---

OVERLAY_SCRIPT = K8S_DIR.parent / "scripts" / "kustomize-overlay.sh"
DIGESTS = {name: "sha256:" + f"{i:x}" * 64 for i, name in enumerate(("keycreator", "creator", "verifier"), 1)}


def write_script_overlay(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(OVERLAY_SCRIPT), str(directory), *args], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module")
def script_overlay(tmp_path_factory) -> list[dict]:
    directory = tmp_path_factory.mktemp("script-overlay") / "deploy" / "prod"
    args = [REGISTRY, "--tag", "1.2.3", "--pull-secret", "regcred"]
    for name, digest in DIGESTS.items():
        args += ["--digest", f"{name}={digest}"]
    proc = write_script_overlay(directory, *args)
    assert proc.returncode == 0, proc.stderr
    return kustomize(directory)


def test_the_registry_overlay_never_deploys_the_placeholder_secret(script_overlay):
    """k8s/10-secret.yaml's placeholder KEY is printed in this repository:
    applied to a real cluster it would sign tokens anyone can forge, and
    re-applying it would reset a real key. The operator creates the Secret."""
    assert [body for body in script_overlay if body["kind"] == "Secret"] == []
    assert "CHANGE-ME" not in yaml.safe_dump_all(script_overlay)
    # Everything else of the base is there, unchanged in kind and name.
    files = {key(doc.body) for doc in load_docs() if doc.kind != "Secret"}
    assert {key(body) for body in script_overlay} == files


def test_the_registry_overlay_pins_digests_and_names_the_pull_secret(script_overlay):
    assert images(script_overlay) == {f"{REGISTRY}/{name}@{digest}" for name, digest in DIGESTS.items()}
    for body in script_overlay:
        if body["kind"] == "Deployment":
            assert pod_spec(body)["imagePullSecrets"] == [{"name": "regcred"}], body["metadata"]["name"]


@pytest.mark.parametrize("version", schema.VERSIONS)
def test_the_registry_overlay_is_valid_strict(script_overlay, version):
    for body in script_overlay:
        schema._validate(body, version)


def test_the_registry_overlay_by_tag_without_a_pull_secret(tmp_path):
    proc = write_script_overlay(tmp_path / "o", REGISTRY, "--tag", "2.0")
    assert proc.returncode == 0, proc.stderr
    rendered = kustomize(tmp_path / "o")
    assert images(rendered) == {f"{REGISTRY}/{name}:2.0" for name in DIGESTS}
    assert not any("imagePullSecrets" in pod_spec(body) for body in rendered if body["kind"] == "Deployment")
    assert [body for body in rendered if body["kind"] == "Secret"] == []


@pytest.mark.parametrize("args", [[], [REGISTRY, "--digest", "creator=sha256:12"],
                                  [REGISTRY, "--digest", "other=" + DIGESTS["creator"]],
                                  [REGISTRY, "--pull-secret", "Not_A_Name"], [REGISTRY, "--tag"],
                                  [REGISTRY, "--bogus"], ["https://registry.example.com"]])
def test_the_overlay_script_refuses_bad_arguments_in_one_line(tmp_path, args):
    proc = write_script_overlay(tmp_path / "o", *args)  # [] leaves out the registry
    assert proc.returncode == 2, proc
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("kustomize-overlay.sh: error: ")
    assert not (tmp_path / "o" / "kustomization.yaml").exists()
