"""compose.yaml under TOKEN_ALG=EdDSA and ES256: the running containers, the
published JWK Set and a key rotation under load with a client that caches
the set.

The stack is test_compose.py's (same images, project and helpers), started
once per algorithm with TOKEN_ALG set and a short JWKS_MAX_AGE_SECONDS, so
that a rotation's "wait until every cache has the new set" takes seconds.

    python3 -m pytest -v tests/e2e/test_compose_asymmetric.py
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
import threading
import time
import urllib.request
from email.message import Message

import jwt
import pytest
from jwcrypto import jwk as jwcrypto_jwk

import test_compose as e2e  # also puts tests/ on sys.path, for rotation_load
from rotation_load import TokenLoad, token_kid

ALGORITHMS = ("EdDSA", "ES256")
MAX_AGE = 3  # JWKS_MAX_AGE_SECONDS of these stacks
KEY = e2e.KEY
NEXT_KEY = "e2e-asymmetric-next-secret"
CREATOR_KEY_SET = f"{e2e.CREATOR}/.well-known/jwks.json"
VERIFIER_KEY_SET = f"{e2e.VERIFIER}/.well-known/jwks.json"
SECRET_NAMES = {"KEY", "KEY_PREVIOUS", "KEY_NEXT"}


@pytest.fixture(scope="module", params=ALGORITHMS)
def alg(request) -> str:
    """Each algorithm gets its own stack: module-scoped, so pytest runs the
    tests of one algorithm together and starts the stack once for them."""
    e2e.docker_with_images()
    e2e.STACK_ENV.update(TOKEN_ALG=request.param, JWKS_MAX_AGE_SECONDS=str(MAX_AGE))
    try:
        with e2e.running_stack():
            yield request.param
    finally:
        e2e.STACK_ENV.clear()


# --- helpers ---------------------------------------------------------------------


def key_set(url: str) -> tuple[dict, Message]:
    """The JWK Set at `url` and the response headers (names in any case)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200, resp.status
        return json.load(resp), resp.headers


def kids(url: str = CREATOR_KEY_SET) -> list[str]:
    return [key["kid"] for key in key_set(url)[0]["keys"]]


def verify_with_pyjwt(jwks_url: str, token: str, alg: str) -> str:
    """What a Python service does with only the URL: PyJWT's PyJWKClient."""
    signing_key = jwt.PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
    return jwt.decode(token, signing_key.key, algorithms=[alg])["username"]


class CachingKeySetClient:
    """An outside verifier as gateways build them: it fetches the JWK Set,
    keeps it for the response's `Cache-Control: max-age`, and until then
    refuses a token whose `kid` is not in the set it has. (PyJWKClient
    refetches on an unknown kid instead, so it would hide a key that signs
    before it was published.) `lifetime` replaces max-age, as gateways that
    set their own cache duration do (Envoy's jwt_authn `cache_duration`)."""

    def __init__(self, url: str, alg: str, lifetime: int | None = None):
        self.url, self.alg, self.lifetime = url, alg, lifetime
        self.fetches = 0
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._expires = 0.0

    def _current_keys(self) -> dict[str, jwt.PyJWK]:
        with self._lock:
            if time.monotonic() >= self._expires:
                document, headers = key_set(self.url)
                max_age = re.search(r"max-age=(\d+)", headers.get("Cache-Control", ""))
                assert max_age, f"no max-age in {headers.items()}"
                self._keys = {key["kid"]: jwt.PyJWK(key) for key in document["keys"]}
                self._expires = time.monotonic() + (self.lifetime or int(max_age.group(1)))
                self.fetches += 1
            return self._keys

    def verify(self, token: str) -> str:
        kid = token_kid(token)
        key = self._current_keys().get(kid)
        if key is None:
            raise LookupError(f"kid {kid} is not in the cached key set")
        return jwt.decode(token, key.key, algorithms=[self.alg])["username"]


def container_key_files(service: str) -> dict[str, bytes]:
    """The files the service's running container sees in /usr/share/key
    (`docker cp` from the container: the image has no shell)."""
    proc = subprocess.run(["docker", "cp", f"{e2e.container_id(service)}:/usr/share/key", "-"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        return {member.name.removeprefix("key/"): tar.extractfile(member).read()
                for member in tar.getmembers() if member.isfile()}


# --- tests -------------------------------------------------------------------------


def test_both_services_publish_the_same_public_key_set(alg):
    creator_set, headers = key_set(CREATOR_KEY_SET)
    verifier_set, _ = key_set(VERIFIER_KEY_SET)
    assert creator_set == verifier_set
    assert headers["Content-Type"].startswith(("application/jwk-set+json", "application/json")), headers.items()
    assert f"max-age={MAX_AGE}" in headers["Cache-Control"], headers.items()
    [key] = creator_set["keys"]
    assert key["alg"] == alg and key["use"] == "sig", key
    assert {"d", "p", "q", "dp", "dq", "qi", "k"}.isdisjoint(key), f"private parameter published: {key}"
    # kid is the RFC 7638 thumbprint, computed here by jwcrypto.
    assert key["kid"] == jwcrypto_jwk.JWK(**key).thumbprint(), key


def test_a_client_with_only_the_url_verifies_the_creators_tokens(alg):
    token = e2e.create_token("compose-user")
    assert jwt.get_unverified_header(token)["alg"] == alg
    assert verify_with_pyjwt(CREATOR_KEY_SET, token, alg) == "compose-user"
    status, _, body = e2e.http("POST", f"{e2e.VERIFIER}/verifier", {"token": token})
    assert (status, body) == (200, "compose-user")


def test_the_verifier_refuses_an_hs256_token_of_the_same_secret(alg):
    """The algorithm is the deployment's: an HS256 token signed with the key an
    HS256 deployment of the same KEY would use is refused."""
    hs256_key = hashlib.sha512(f"{KEY}\n".encode()).hexdigest()
    kid = hashlib.sha256(hs256_key.encode()).hexdigest()[:16]
    now = int(time.time())
    token = jwt.encode({"username": "mallory", "iat": now, "exp": now + 60},
                       hs256_key.encode(), algorithm="HS256", headers={"kid": kid})
    status, ctype, body = e2e.http("POST", f"{e2e.VERIFIER}/verifier", {"token": token})
    assert status == 401, (status, body)
    assert ctype.startswith("application/json") and "mallory" not in body, body


def test_the_running_verifier_holds_public_keys_only(alg):
    """What the verifier's container has, read from the running container:
    no secret in its environment, and in its key volume only jwks.json,
    without a private parameter."""
    info = e2e.inspect(e2e.container_id("verifier"))
    assert info["State"]["Running"], info["State"]
    env = dict(entry.split("=", 1) for entry in info["Config"]["Env"] or [])
    assert SECRET_NAMES.isdisjoint(env), f"the verifier sees {sorted(SECRET_NAMES & set(env))}"
    assert env["TOKEN_ALG"] == alg, env
    assert not any(KEY in value for value in env.values()), "the secret is in the verifier's environment"
    mounts = info["Mounts"]
    assert [(m["Destination"], m["RW"]) for m in mounts] == [("/usr/share/key", False)], mounts
    assert mounts[0]["Name"].endswith("verifier-key"), mounts

    files = container_key_files("verifier")
    assert set(files) == {"jwks.json"}, f"the verifier's volume holds {sorted(files)}"
    published = json.loads(files["jwks.json"])
    assert all({"d", "k"}.isdisjoint(key) for key in published["keys"]), published
    hs256_key = hashlib.sha512(f"{KEY}\n".encode()).hexdigest().encode()
    assert KEY.encode() not in files["jwks.json"] and hs256_key not in files["jwks.json"]

    # The creator, by contrast, holds the private key it signs with; its
    # environment has no secret either (only the keycreator runs see KEY).
    creator_env = {e.split("=", 1)[0] for e in e2e.inspect(e2e.container_id("creator"))["Config"]["Env"]}
    assert SECRET_NAMES.isdisjoint(creator_env), creator_env
    assert "signing-key.json" in container_key_files("creator")


def test_signing_before_publishing_is_what_breaks_a_caching_client(alg):
    """The control for the rotation test below: open the rotation without the
    publish step, and a client that caches the set refuses the new tokens the
    verifier accepts. The publish step exists for this."""
    cache = CachingKeySetClient(VERIFIER_KEY_SET, alg, lifetime=600)
    cache.verify(e2e.create_token())  # the set as it is now, cached beyond this test
    try:
        e2e.rotate("open", NEXT_KEY, previous=KEY)
        token = e2e.create_token("signed-with-next")
        status, _, body = e2e.http("POST", f"{e2e.VERIFIER}/verifier", {"token": token})
        assert (status, body) == (200, "signed-with-next")
        with pytest.raises(LookupError, match="not in the cached key set"):
            cache.verify(token)
    finally:
        e2e.rotate("close", KEY)
    assert kids() == kids(VERIFIER_KEY_SET) and len(kids()) == 1


def test_rotation_under_load_rejects_no_token_at_a_caching_client(alg):
    """scripts/rotate-key.sh publish, open and close, as docs/operate.md gives
    them, while a client creates tokens and has each verified by the
    verifier and by a client that caches the set for its max-age: neither
    may reject a valid token, and tokens of both keys must have been checked."""
    [old_kid] = kids()
    token_before = e2e.create_token("before-rotation")
    cache = CachingKeySetClient(CREATOR_KEY_SET, alg)
    try:
        with TokenLoad([e2e.CREATOR], [e2e.VERIFIER], outside_verifier=cache.verify) as load:
            time.sleep(2)
            e2e.rotate("publish", KEY, next_key=NEXT_KEY)
            published = kids()
            assert published[0] == old_kid and len(published) == 2, published
            new_kid = published[1]
            assert kids(VERIFIER_KEY_SET) == published
            time.sleep(MAX_AGE + 1)  # what rotate-key.sh waits: every cache has the new set
            e2e.rotate("open", NEXT_KEY, previous=KEY)
            assert kids() == [new_kid, old_kid]
            time.sleep(3)
            e2e.rotate("close", NEXT_KEY)
            time.sleep(2)
        print(load.summary(), f"; the caching client fetched the set {cache.fetches} times")
        assert not load.rejected and not load.errors, load.summary()
        assert load.kids[old_kid] > 0 and load.kids[new_kid] > 0, load.summary()
        assert set(load.kids) == {old_kid, new_kid}, load.summary()
        assert 2 <= cache.fetches < load.verified / 5, (cache.fetches, load.verified)

        assert kids() == kids(VERIFIER_KEY_SET) == [new_kid]
        status, _, body = e2e.http("POST", f"{e2e.VERIFIER}/verifier", {"token": token_before})
        assert status == 401 and "unknown key id" in body, (status, body)
        assert verify_with_pyjwt(CREATOR_KEY_SET, e2e.create_token("after"), alg) == "after"
    finally:
        e2e.rotate("close", KEY)  # back to the stack's own KEY
