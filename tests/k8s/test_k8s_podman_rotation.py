"""End-to-end: the Kubernetes key rotation procedure (README, "Rotating the
signing key") on the pods of k8s/ run with `podman kube play`, under load.

The procedure: put KEY=new and KEY_PREVIOUS=old in the Secret, roll the
verifiers, then the creators; one token lifetime later remove KEY_PREVIOUS and
roll the verifiers again. While a client creates and verifies tokens
continuously, no valid token may be rejected; afterwards a token of the
retired key must be.

How a roll is represented with podman, and why it is honest:

* podman has no Deployments, ReplicaSets or Services. A pod reads the Secret
  only when it starts (its keycreator init container), exactly as in
  Kubernetes, so "rolling" a Deployment means starting a new pod from the
  same manifest with the Secret as it is now (a new podman secret, since
  podman secrets are immutable) and then stopping the old pod.
* A Deployment rolls with maxSurge 1 / maxUnavailable 0: the new pod becomes
  ready, then the old one is taken out of the Service and stopped; for a
  while both serve. With no Service to spread traffic, each pod is published
  on its own 127.0.0.1 port and the client spreads its requests over every
  pod of a role that is currently "behind the Service": old and new side by
  side during a roll. A pod is taken out of the client's list a moment before
  it is stopped, as endpoints are removed before the preStop hook ends.
* The client verifies each token at a verifier picked independently of the
  creator, so tokens of old creators reach new verifiers and the other way
  round, which is where a wrong order (creators before verifiers) rejects
  tokens.
* The window between the creator roll and the closing verifier roll is a few
  seconds instead of one token lifetime: the client verifies each token right
  after creating it. A token made before the rotation stands for the tokens
  still in circulation: accepted within the window, rejected after it.

One pod per role and generation (the manifests' replica counts are not the
point here). Needs what test_k8s_podman_e2e.py needs; its fixtures build and
load the images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import sys
import time
from pathlib import Path

import pytest

from k8s_helpers import EXPECTED_APPS, REPO_ROOT, SECRET_NAME, Doc, deep_copy, load_docs
import podman_kube
from podman_kube import PodmanCopy
from test_k8s_podman_e2e import images, play_until_ready, podman_version, request  # noqa: F401 (fixtures)

sys.path.insert(0, str(REPO_ROOT / "tests"))
from rotation_load import TokenLoad, token_kid  # noqa: E402

pytestmark = pytest.mark.podman

# How long old and new pods serve side by side during a roll, and how long a
# pod keeps running after it left the client's list (the preStop sleep).
SURGE_S = 2.0
DRAIN_S = 1.0


def kid_of_secret(secret: str) -> str:
    """The kid of the key keycreator derives from `secret` (README)."""
    key = hashlib.sha512(f"{secret}\n".encode()).hexdigest()
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def with_secret(docs: list[Doc], values: dict[str, str]) -> list[Doc]:
    """The manifests with the Secret holding exactly `values`, as after
    `kubectl create secret generic signing-key --from-literal=...`."""
    out = []
    for doc in docs:
        if doc.kind == "Secret" and doc.name == SECRET_NAME:
            body = deep_copy(doc.body)
            body.pop("data", None)
            body["stringData"] = dict(values)
            doc = dataclasses.replace(doc, body=body)
        out.append(doc)
    return out


@dataclasses.dataclass
class Cluster:
    """The pods started so far, each a one-pod copy of a Deployment."""

    workdir: Path
    copies: list[PodmanCopy] = dataclasses.field(default_factory=list)

    def start(self, app: str, secret: dict[str, str]) -> str:
        """A new pod of `app` reading `secret`; waits until ready; its base URL."""
        suffix = secrets.token_hex(4)
        copy = podman_kube.make_podman_copy(
            with_secret(load_docs(), secret), {app: EXPECTED_APPS[app]},
            self.workdir / suffix, suffix)
        self.copies.append(copy)
        play_until_ready(copy)
        return self.url(copy)

    @staticmethod
    def url(copy: PodmanCopy) -> str:
        (pod,) = copy.pods.values()
        return f"http://127.0.0.1:{pod.host_port}"

    def stop(self, url: str) -> None:
        copy = next(c for c in self.copies if self.url(c) == url)
        errors = podman_kube.down(copy)
        assert not errors, "\n".join(errors)
        self.copies.remove(copy)


@pytest.fixture
def cluster(images, tmp_path) -> Cluster:  # noqa: F811 (the imported fixture)
    podman_kube.remove_leftovers()
    cluster = Cluster(tmp_path)
    try:
        yield cluster
    finally:
        errors = [e for copy in cluster.copies for e in podman_kube.down(copy)]
        assert not errors, "teardown failed:\n" + "\n".join(errors)


def roll(load: TokenLoad, cluster: Cluster, app: str, current: list[str],
         secret: dict[str, str]) -> list[str]:
    """Roll `app` (one pod): surge a new pod, serve side by side, drain and stop the old."""
    setter = load.set_creators if app == "creator" else load.set_verifiers
    new = cluster.start(app, secret)
    setter(current + [new])
    time.sleep(SURGE_S)
    setter([new])
    time.sleep(DRAIN_S)
    for old in current:
        cluster.stop(old)
    return [new]


def verify(url: str, token: str) -> tuple[int, str]:
    port = int(url.rsplit(":", 1)[1])
    status, _, body = request(port, "POST", "/verifier", {"token": token})
    return status, body.decode(errors="replace")


def test_key_rotation_in_documented_order_rejects_no_valid_token(cluster):
    old, new = f"old-{secrets.token_hex(16)}", f"new-{secrets.token_hex(16)}"
    started = time.monotonic()
    creators = [cluster.start("creator", {"KEY": old})]
    verifiers = [cluster.start("verifier", {"KEY": old})]
    port = int(creators[0].rsplit(":", 1)[1])
    status, _, body = request(port, "POST", "/create", {"username": "before", "password": "p"})
    assert status == 200, body
    old_token = body.decode()
    assert token_kid(old_token) == kid_of_secret(old)

    with TokenLoad(creators, verifiers) as load:
        time.sleep(1)
        # 1. Secret with KEY=new and KEY_PREVIOUS=old; verifiers roll, then creators.
        both = {"KEY": new, "KEY_PREVIOUS": old}
        verifiers = roll(load, cluster, "verifier", verifiers, both)
        assert verify(verifiers[0], old_token) == (200, "before")
        creators = roll(load, cluster, "creator", creators, both)
        time.sleep(1)
        # 2. After the window: KEY_PREVIOUS removed, verifiers roll again.
        verifiers = roll(load, cluster, "verifier", verifiers, {"KEY": new})
        time.sleep(1)
    print(f"\n{load.summary()}\nrotation test: {time.monotonic() - started:.0f}s")
    assert not load.rejected and not load.errors, load.summary()
    assert load.kids[kid_of_secret(old)] > 0 and load.kids[kid_of_secret(new)] > 0, load.summary()

    status, body = verify(verifiers[0], old_token)
    assert status == 401, body
    assert json.loads(body)["error"] == "invalid_token" and "unknown key id" in body, body
