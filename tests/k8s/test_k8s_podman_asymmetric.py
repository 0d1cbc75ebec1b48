"""End-to-end: the pods of k8s/ under `TOKEN_ALG: ES256` (the token-settings
ConfigMap), run with `podman kube play`.

What a gateway team relies on: the creator signs ES256 tokens whose `kid`
names a key of the published JWK Set, the verifier checks them, and the
verifier pod holds nothing that could sign (no secret in its environment, no
private key in its key volume), as the manifests promise. Same images,
fixtures and podman adaptations as test_k8s_podman_e2e.py.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from k8s_helpers import (
    EXPECTED_APPS,
    KEY_DIR,
    SECRET_KEY,
    SECRET_KEY_NEXT,
    SECRET_KEY_PREVIOUS,
    SECRET_NAME,
    load_docs,
    one,
)
import podman_kube
from podman_kube import PodmanCopy
from test_k8s_podman_e2e import (  # noqa: F401 (fixtures)
    b64url_decode,
    images,
    play_until_ready,
    podman_version,
    request,
)

pytestmark = pytest.mark.podman

ALG = "ES256"
ISSUER = "https://tokens.example"
AUDIENCE = "api"


@pytest.fixture(scope="module")
def deployed(images, tmp_path_factory) -> PodmanCopy:  # noqa: F811 (the imported fixture)
    podman_kube.remove_leftovers()
    copy = podman_kube.make_podman_copy(
        load_docs(), EXPECTED_APPS, tmp_path_factory.mktemp("podman-es256"), secrets.token_hex(4),
        settings={"TOKEN_ALG": ALG, "TOKEN_ISSUER": ISSUER, "TOKEN_AUDIENCE": AUDIENCE})
    try:
        play_until_ready(copy)
        yield copy
    finally:
        errors = podman_kube.down(copy)
        assert not errors, "teardown failed:\n" + "\n".join(errors)


def key_set(port: int) -> dict:
    status, headers, body = request(port, "GET", "/.well-known/jwks.json")
    assert status == 200, f"HTTP {status} {body[:200]!r}"
    assert headers["content-type"] == "application/jwk-set+json", headers
    return json.loads(body)


def key_volume_files(copy: PodmanCopy, app: str) -> dict[str, bytes]:
    """The files of the pod's key volume, read on the host."""
    volume = next(v for v in copy.volumes if v.startswith(f"{copy.pods[app].deployment}-"))
    info = json.loads(podman_kube.run(["podman", "volume", "inspect", volume]).stdout)[0]
    directory = Path(info["Mountpoint"])
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_tokens_are_signed_by_a_published_key_and_verified(deployed):
    creator, verifier = deployed.pods["creator"], deployed.pods["verifier"]
    status, _, body = request(creator.host_port, "POST", "/create",
                              {"username": "gateway", "password": "p"})
    assert status == 200, body
    token = body.decode().strip()
    header, claims = (json.loads(b64url_decode(part)) for part in token.split(".")[:2])
    assert header["alg"] == ALG
    assert (claims["iss"], claims["aud"]) == (ISSUER, AUDIENCE)
    published = key_set(creator.host_port)
    assert [key["kid"] for key in published["keys"]] == [header["kid"]]
    assert key_set(verifier.host_port) == published
    status, _, body = request(verifier.host_port, "POST", "/verifier", {"token": token})
    assert (status, body.decode().strip()) == (200, "gateway")


def test_only_the_creator_pod_holds_a_private_key(deployed):
    creator = key_volume_files(deployed, "creator")
    verifier = key_volume_files(deployed, "verifier")
    assert sorted(creator) == ["jwks.json", "signing-key.json"]
    assert json.loads(creator["signing-key.json"])["d"]
    assert sorted(verifier) == ["jwks.json"], "the verifier's volume must hold public keys only"
    for key in json.loads(verifier["jwks.json"])["keys"]:
        assert "d" not in key, key
    assert verifier["jwks.json"] == creator["jwks.json"]


@pytest.mark.parametrize("app", sorted(EXPECTED_APPS))
def test_app_containers_see_the_settings_and_no_secret(deployed, app):
    info = podman_kube.inspect_container(deployed.pods[app].app_container)
    env = dict(e.split("=", 1) for e in info["Config"]["Env"] or [])
    assert env["TOKEN_ALG"] == ALG and env["TOKEN_AUDIENCE"] == AUDIENCE
    for secret in (SECRET_KEY, SECRET_KEY_PREVIOUS, SECRET_KEY_NEXT):
        assert secret not in env, f"{app} must not see {secret}"
    mounts = [m for m in info["Mounts"] if m["Destination"] == KEY_DIR]
    assert len(mounts) == 1 and mounts[0]["RW"] is False, mounts
    placeholder = one(load_docs(), "Secret", SECRET_NAME).body["stringData"][SECRET_KEY]
    assert placeholder not in json.dumps(env), f"{app} sees the secret's value"
