"""Signed images: `scripts/publish.sh --sign-key` against the real registry
of test_publish.py (CNCF Distribution on 127.0.0.1, TLS from a test CA,
htpasswd logins; its fixtures are reused, not copied), and
`scripts/publish.sh --verify` / `image-signer verify` on what it pushed.

- Two cosign key pairs are made without cosign (`image-signer
  generate-key-pair`, the sigstore crate's cosign key format).
- publish.sh signs each pushed index and each platform manifest; verifying
  the tag accepts the index and both architectures.
- A second, independent implementation checks every signature in the
  registry: the `sha256-<digest>.sig` manifest read over the registry's HTTP
  API, its payload naming the pushed digest, and the ECDSA P-256 / SHA-256
  signature checked with the public key by Python's `cryptography`.
- Refused, with one line and exit 1: an unsigned image, the other key's
  public key, a manifest changed after signing (with the old signature
  copied next to it, or with the payload edited to name the new digest), a
  signature copied to another image, an index whose platform manifest is not
  signed; and a wrong passphrase, a missing key or passphrase fail before
  anything is built or pushed.

    python3 -m pytest -v tests/registry/test_signing.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from test_publish import (  # noqa: F401  (fixtures: tools, registry, client_env)
    NAMES, NAMESPACE, OCI_INDEX, OCI_MANIFEST, ROOT, client_env, e2e, error_lines, publish, registry,
    tag_exists, tools,
)

TAG = "0.1.0-signed"
SIGNER_MANIFEST = ROOT / "components" / "signer" / "Cargo.toml"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"


# --- the signer and the keys -------------------------------------------------------------


@pytest.fixture(scope="module")
def signer() -> Path:
    """image-signer, built as publish.sh builds it."""
    e2e.run(["cargo", "build", "--locked", "--release", "--manifest-path", str(SIGNER_MANIFEST)], timeout=3600)
    target = Path(os.environ.get("CARGO_TARGET_DIR", SIGNER_MANIFEST.parent / "target"))
    path = target / "release" / "image-signer"
    assert path.is_file(), path
    return path


def run_signer(signer: Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(signer), *args], env=env or dict(os.environ), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def keys(signer, tmp_path_factory) -> dict:
    """Two cosign key pairs, `release` (what publish.sh signs with) and
    `other`, made without cosign, each encrypted with its own passphrase."""
    directory = tmp_path_factory.mktemp("keys")
    result = {"dir": directory}
    for name in ("release", "other"):
        password = secrets.token_urlsafe(16)
        proc = run_signer(signer, "generate-key-pair", "--output-key-prefix", str(directory / name),
                          env=os.environ | {"COSIGN_PASSWORD": password})
        assert proc.returncode == 0, proc.stderr
        assert password not in proc.stdout + proc.stderr
        (directory / f"{name}.password").write_text(password + "\n")
        result[name] = {"key": directory / f"{name}.key", "pub": directory / f"{name}.pub", "password": password}
    return result


def test_key_pair_is_cosigns_format(keys):
    """The private key is cosign's encrypted PEM (scrypt + secretbox in
    JSON), not readable without the passphrase; the public key is P-256."""
    release = keys["release"]
    pem = release["key"].read_text()
    assert pem.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"), pem.splitlines()[0]
    body = json.loads(base64.b64decode("".join(pem.strip().splitlines()[1:-1])))
    assert body["kdf"]["name"] == "scrypt" and body["cipher"]["name"] == "nacl/secretbox", body.keys()
    assert release["key"].stat().st_mode & 0o777 == 0o600
    public = serialization.load_pem_public_key(release["pub"].read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"


def test_key_pair_refuses_to_overwrite(signer, keys):
    proc = run_signer(signer, "generate-key-pair", "--output-key-prefix", str(keys["dir"] / "release"),
                      env=os.environ | {"COSIGN_PASSWORD": "x"})
    assert proc.returncode == 1 and "exists already" in proc.stderr, proc
    assert keys["release"]["pub"].read_text().startswith("-----BEGIN PUBLIC KEY-----")


# --- the registry, read by hand -----------------------------------------------------------


class Api:
    """The registry's HTTP API (distribution-spec), with the test login."""

    def __init__(self, registry):
        self.base = f"https://{registry.host}/v2"
        self.session = requests.Session()
        self.session.auth = (registry.user, registry.password)
        self.ca = str(registry.workdir / "ca.crt")

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        # The CA per request: a session's `verify` loses to REQUESTS_CA_BUNDLE.
        return self.session.request(method, url, verify=self.ca, **kwargs)

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        response = self.request("GET", f"{self.base}/{repository}/manifests/{reference}",
                                    headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}, timeout=30)
        assert response.status_code == 200, (repository, reference, response.status_code, response.text)
        return response.content, response.headers["Content-Type"]

    def has_manifest(self, repository: str, reference: str) -> bool:
        response = self.request("HEAD", f"{self.base}/{repository}/manifests/{reference}",
                                     headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}, timeout=30)
        assert response.status_code in (200, 404), response.status_code
        return response.status_code == 200

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        response = self.request("PUT", f"{self.base}/{repository}/manifests/{reference}", data=body,
                                    headers={"Content-Type": media_type}, timeout=30)
        assert response.status_code == 201, (response.status_code, response.text)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        assert response.headers["Docker-Content-Digest"] == digest
        return digest

    def blob(self, repository: str, digest: str) -> bytes:
        response = self.request("GET", f"{self.base}/{repository}/blobs/{digest}", timeout=30)
        assert response.status_code == 200, (digest, response.status_code)
        assert "sha256:" + hashlib.sha256(response.content).hexdigest() == digest
        return response.content

    def put_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = self.request("POST", f"{self.base}/{repository}/blobs/uploads/", timeout=30)
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.base.removesuffix("/v2") + location
        done = self.request("PUT", location, params={"digest": digest}, data=data,
                                headers={"Content-Type": "application/octet-stream"}, timeout=30)
        assert done.status_code == 201, done.text
        return digest


def signature_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def independent_check(api: Api, repository: str, digest: str, public_pem: bytes) -> dict:
    """Check the cosign signature of `digest` without the signer: read the
    `.sig` manifest and its payload from the registry, check that the payload
    names `digest`, and verify the ECDSA P-256 / SHA-256 signature over the
    payload's bytes. Raises InvalidSignature when the key did not sign it;
    returns the payload."""
    body, _ = api.manifest(repository, signature_tag(digest))
    manifest = json.loads(body)
    assert manifest["mediaType"] == OCI_MANIFEST, manifest.get("mediaType")
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == SIMPLE_SIGNING, layer["mediaType"]
    payload_bytes = api.blob(repository, layer["digest"])
    payload = json.loads(payload_bytes)
    assert payload["critical"]["type"] == "cosign container image signature", payload
    assert payload["critical"]["image"]["docker-manifest-digest"] == digest, payload
    signature = base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION])
    public = serialization.load_pem_public_key(public_pem)
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    public.verify(signature, payload_bytes, ec.ECDSA(hashes.SHA256()))
    return payload


@pytest.fixture(scope="module")
def api(registry) -> Api:
    return Api(registry)


# --- publishing, signed ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed(registry, client_env, keys, signer) -> dict:
    """publish.sh with --sign-key and the passphrase from a file; the signer
    is the one publish.sh builds (here: up to date already)."""
    release = keys["release"]
    env = {k: v for k, v in client_env.items() if k not in ("COSIGN_PASSWORD", "IMAGE_SIGNER")}
    proc = publish(f"{registry.host}/{NAMESPACE}", "--tag", TAG, "--sign-key", str(release["key"]),
                   "--sign-password-file", str(keys["dir"] / "release.password"),
                   env=env, timeout=e2e.BUILD_TIMEOUT)
    assert proc.returncode == 0, f"publish.sh failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    assert release["password"] not in proc.stdout + proc.stderr
    assert registry.password not in proc.stdout + proc.stderr
    pattern = re.compile(rf"{re.escape(registry.host)}/{NAMESPACE}/([a-z]+):{re.escape(TAG)}@(sha256:[0-9a-f]{{64}})")
    matches = [pattern.fullmatch(line) for line in proc.stdout.splitlines()]
    assert all(matches) and [m.group(1) for m in matches] == list(NAMES), proc.stdout
    prefix = f"{registry.host}/{NAMESPACE}"
    return {"prefix": prefix, "digests": {m.group(1): m.group(2) for m in matches}, "stderr": proc.stderr}


def platform_digests(api: Api, name: str, index_digest: str) -> dict[str, str]:
    """{architecture: digest} of the index the registry serves."""
    body, media_type = api.manifest(f"{NAMESPACE}/{name}", index_digest)
    assert media_type == OCI_INDEX
    return {m["platform"]["architecture"]: m["digest"] for m in json.loads(body)["manifests"]}


def verify(*refs: str, key: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return publish("--verify", str(key), *refs, env=env, timeout=300)


def test_publish_signs_every_index_and_platform_manifest(signed, api, registry):
    """Nine signatures (3 indexes, 3 x 2 platform manifests), each pushed as
    REPO:sha256-<digest>.sig after the image it signs."""
    puts = re.findall(r'"PUT /v2/([^ ]+)/manifests/([^ ]+) HTTP/[0-9.]+" 201', registry.log_text())
    for name, index_digest in signed["digests"].items():
        repository = f"{NAMESPACE}/{name}"
        wanted = [index_digest, *platform_digests(api, name, index_digest).values()]
        assert len(wanted) == 3
        refs = [reference for repo, reference in puts if repo == repository]
        for digest in wanted:
            assert signature_tag(digest) in refs, (name, digest, refs)
            assert refs.index(signature_tag(digest)) > refs.index(TAG), "signed before the tag was pushed"


def test_verify_accepts_the_signed_images_for_both_architectures(signed, keys, client_env):
    refs = [f"{signed['prefix']}/{name}:{TAG}" for name in NAMES]
    proc = verify(*refs, key=keys["release"]["pub"], env=client_env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name in NAMES:
        mine = [line for line in lines if line.startswith(f"{signed['prefix']}/{name}@sha256:")]
        assert len(mine) == 3, lines
        assert mine[0].endswith(f"@{signed['digests'][name]}: signature verified")
        assert sorted(line.rsplit("(", 1)[1] for line in mine[1:]) == [
            "linux/amd64): signature verified", "linux/arm64): signature verified"], mine


def test_signatures_check_out_independently(signed, keys, api):
    """Python's `cryptography`, not the signer, checks each signature: the
    index's and each platform manifest's."""
    public_pem = keys["release"]["pub"].read_bytes()
    for name, index_digest in signed["digests"].items():
        repository = f"{NAMESPACE}/{name}"
        for digest in [index_digest, *platform_digests(api, name, index_digest).values()]:
            payload = independent_check(api, repository, digest, public_pem)
            assert payload["critical"]["identity"]["docker-reference"] == f"{signed['prefix']}/{name}"
            with pytest.raises(InvalidSignature):  # the check can fail: not the other key's
                independent_check(api, repository, digest, keys["other"]["pub"].read_bytes())


def test_the_signer_verifies_by_digest_too(signed, keys, signer, client_env, api):
    name = "creator"
    digests = platform_digests(api, name, signed["digests"][name])
    proc = run_signer(signer, "verify", "--key", str(keys["release"]["pub"]),
                      f"{signed['prefix']}/{name}@{digests['arm64']}", env=client_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{signed['prefix']}/{name}@{digests['arm64']}: signature verified"


# --- refusals ------------------------------------------------------------------------------


def assert_refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    # One line, after at most publish.sh's progress lines (`[publish] ...`).
    lines = [line for line in error_lines(proc) if not line.startswith("[publish] ")]
    assert len(lines) == 1 and lines[0].startswith("publish.sh: error: "), lines
    assert "panicked" not in proc.stderr and "RUST_BACKTRACE" not in proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_other_key_is_refused(signed, keys, client_env):
    proc = verify(f"{signed['prefix']}/verifier:{TAG}", key=keys["other"]["pub"], env=client_env)
    assert_refused(proc, "no signature at", "verifies with", "other.pub")


def changed_manifest(api: Api, name: str, arch: str, signed: dict, mark: str) -> tuple[str, bytes]:
    """A copy of a signed platform manifest with one annotation added,
    pushed to the repository under the tag `mark`: what a registry or a
    man in the middle could serve instead. Returns its digest and bytes."""
    repository = f"{NAMESPACE}/{name}"
    original = platform_digests(api, name, signed["digests"][name])[arch]
    body, media_type = api.manifest(repository, original)
    manifest = json.loads(body)
    manifest.setdefault("annotations", {})["org.example.changed"] = mark
    changed = json.dumps(manifest).encode()
    digest = api.put_manifest(repository, mark, changed, media_type)
    assert digest != original
    return digest, changed


def test_unsigned_image_is_refused(signed, keys, client_env, api):
    digest, _ = changed_manifest(api, "creator", "amd64", signed, "unsigned")
    proc = verify(f"{signed['prefix']}/creator:unsigned", key=keys["release"]["pub"], env=client_env)
    assert_refused(proc, "is not signed", signature_tag(digest))


def test_manifest_changed_after_signing_is_refused(signed, keys, client_env, api):
    """The tag now names a changed manifest, and the old signature was
    copied next to it: its payload names the old digest."""
    name = "verifier"
    repository = f"{NAMESPACE}/{name}"
    original = platform_digests(api, name, signed["digests"][name])["arm64"]
    digest, _ = changed_manifest(api, name, "arm64", signed, "changed")
    body, media_type = api.manifest(repository, signature_tag(original))
    api.put_manifest(repository, signature_tag(digest), body, media_type)
    proc = verify(f"{signed['prefix']}/{name}:changed", key=keys["release"]["pub"], env=client_env)
    assert_refused(proc, "made for another image", original)


def test_payload_edited_to_name_the_changed_manifest_is_refused(signed, keys, client_env, api):
    """As above, but the copied payload is edited to name the new digest and
    keeps the old signature: the signature no longer verifies. The
    independent check refuses it too."""
    name = "keycreator"
    repository = f"{NAMESPACE}/{name}"
    original = platform_digests(api, name, signed["digests"][name])["amd64"]
    digest, _ = changed_manifest(api, name, "amd64", signed, "edited")
    body, media_type = api.manifest(repository, signature_tag(original))
    signature_manifest = json.loads(body)
    layer = signature_manifest["layers"][0]
    payload = json.loads(api.blob(repository, layer["digest"]))
    payload["critical"]["image"]["docker-manifest-digest"] = digest
    edited = json.dumps(payload).encode()
    layer["digest"], layer["size"] = api.put_blob(repository, edited), len(edited)
    api.put_manifest(repository, signature_tag(digest), json.dumps(signature_manifest).encode(), media_type)
    proc = verify(f"{signed['prefix']}/{name}:edited", key=keys["release"]["pub"], env=client_env)
    assert_refused(proc, "no signature at", "verifies with", "changed after signing")
    with pytest.raises(InvalidSignature):
        independent_check(api, repository, digest, keys["release"]["pub"].read_bytes())


def test_signature_copied_to_another_image_is_refused(signed, keys, client_env, api, registry):
    """keycreator's index signature, blobs and all, next to creator's index
    in creator's repository: the payload names keycreator's index."""
    source, target = f"{NAMESPACE}/keycreator", f"{NAMESPACE}/creator"
    source_digest = signed["digests"]["keycreator"]
    # Another image, unsigned: creator's index with one annotation more.
    body, media_type = api.manifest(target, signed["digests"]["creator"])
    index = json.loads(body)
    index["annotations"] = {"org.example.copy": "1"}
    target_digest = api.put_manifest(target, "copied", json.dumps(index).encode(), media_type)
    signature_body, signature_type = api.manifest(source, signature_tag(source_digest))
    signature_manifest = json.loads(signature_body)
    for blob in [signature_manifest["config"], *signature_manifest["layers"]]:
        assert api.put_blob(target, api.blob(source, blob["digest"])) == blob["digest"]
    api.put_manifest(target, signature_tag(target_digest), signature_body, signature_type)
    proc = verify(f"{signed['prefix']}/creator:copied", key=keys["release"]["pub"], env=client_env)
    assert_refused(proc, "made for another image", source_digest)


def test_index_with_an_unsigned_platform_manifest_is_refused(signed, keys, signer, client_env, api):
    """An index signed with the right key whose arm64 entry is a manifest
    nobody signed: both architectures must be signed."""
    name = "creator"
    repository = f"{NAMESPACE}/{name}"
    arm64_digest, arm64_body = changed_manifest(api, name, "arm64", signed, "arm64-unsigned")
    body, media_type = api.manifest(repository, signed["digests"][name])
    index = json.loads(body)
    for entry in index["manifests"]:
        if entry["platform"]["architecture"] == "arm64":
            entry["digest"], entry["size"] = arm64_digest, len(arm64_body)
    api.put_manifest(repository, "half-signed", json.dumps(index).encode(), media_type)
    release = keys["release"]
    proc = run_signer(signer, "sign", "--key", str(release["key"]), f"{signed['prefix']}/{name}:half-signed",
                      env=client_env | {"COSIGN_PASSWORD": release["password"]})
    assert proc.returncode == 0, proc.stderr
    proc = verify(f"{signed['prefix']}/{name}:half-signed", key=release["pub"], env=client_env)
    assert_refused(proc, "is not signed", arm64_digest)
    index_digest = "sha256:" + hashlib.sha256(json.dumps(index).encode()).hexdigest()
    assert f"{signed['prefix']}/{name}@{index_digest}: signature verified" in proc.stdout.splitlines()


# --- bad input: one line, before anything is built or pushed ------------------------------------


@pytest.mark.parametrize("case", ["wrong passphrase", "missing key", "no passphrase", "missing password file"])
def test_signing_setup_errors_are_one_line_before_any_build(case, registry, client_env, keys, signer, api):
    release = keys["release"]
    env = {k: v for k, v in client_env.items() if k != "COSIGN_PASSWORD"}
    args = ["--sign-key", str(release["key"])]
    expected = {"wrong passphrase": "wrong passphrase", "missing key": "cannot read the signing key",
                "no passphrase": "COSIGN_PASSWORD", "missing password file": "cannot read the password file"}[case]
    if case == "wrong passphrase":
        env["COSIGN_PASSWORD"] = release["password"] + "x"
    elif case == "missing key":
        args = ["--sign-key", str(keys["dir"] / "absent.key")]
        env["COSIGN_PASSWORD"] = release["password"]
    elif case == "missing password file":
        args += ["--sign-password-file", str(keys["dir"] / "absent.password")]
    tag = "setup-" + case.replace(" ", "-")
    proc = publish(f"{registry.host}/{NAMESPACE}", "--tag", tag, *args, env=env, timeout=600)
    line = assert_refused(proc, expected)
    assert release["password"] not in proc.stdout + proc.stderr
    assert "[build-images]" not in proc.stderr, "built before checking the key"
    for name in NAMES:
        assert not tag_exists(registry, client_env, f"{NAMESPACE}/{name}", tag), line


@pytest.mark.parametrize("args, expected", [
    (["--verify"], "needs a value"),
    (["--verify", "KEY"], "at least one image reference"),
    (["--verify", "KEY", "127.0.0.1:5000/team/creator:1", "--tag", "x"], "no other option"),
    (["127.0.0.1:5000/team", "--sign-password-file", "p"], "give --sign-key KEY too"),
])
def test_bad_signing_arguments_are_one_line_and_exit_2(args, expected):
    proc = publish(*args, env=dict(os.environ), timeout=30)
    assert proc.returncode == 2, proc
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("publish.sh: error: ") and expected in lines[0], lines


def test_signer_errors_are_one_line(signer, keys, tmp_path, client_env, signed):
    """The tool on its own: a wrong passphrase, a missing public key, a
    private key given as the public key, an image that does not exist."""
    release = keys["release"]
    ref = f"{signed['prefix']}/creator:{TAG}"
    cases = [
        (["sign", "--key", str(release["key"]), ref], {"COSIGN_PASSWORD": "wrong"}, "wrong passphrase"),
        (["sign", "--key", str(release["key"]), ref], {}, "no passphrase"),
        (["verify", "--key", str(tmp_path / "absent.pub"), ref], {}, "cannot read the public key"),
        (["verify", "--key", str(release["key"]), ref], {}, "not a public key"),
        (["verify", "--key", str(release["pub"]), f"{signed['prefix']}/absent:{TAG}"], {}, "cannot find"),
    ]
    for args, extra, expected in cases:
        env = {k: v for k, v in client_env.items() if k != "COSIGN_PASSWORD"} | extra
        proc = run_signer(signer, *args, env=env)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1, (args, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("image-signer: error: ") and expected in lines[0], lines
        assert "panicked" not in proc.stderr


# --- provenance ------------------------------------------------------------------------------


SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding, written from the DSSE protocol."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def independent_attestation(api: Api, repository: str, digest: str, public_pem: bytes) -> dict:
    """The `.att` next to `digest`, checked without the signer: a DSSE
    envelope whose ECDSA P-256 signature over the PAE verifies with the key,
    holding an in-toto statement that names `digest`. Returns the statement."""
    body, _ = api.manifest(repository, digest.replace(":", "-") + ".att")
    (layer,) = json.loads(body)["layers"]
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json", layer
    assert layer["annotations"]["predicateType"] == SLSA_PROVENANCE
    envelope = json.loads(api.blob(repository, layer["digest"]))
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    payload = base64.b64decode(envelope["payload"])
    public = serialization.load_pem_public_key(public_pem)
    (signature,) = envelope["signatures"]
    public.verify(base64.b64decode(signature["sig"]), pae(envelope["payloadType"], payload), ec.ECDSA(hashes.SHA256()))
    statement = json.loads(payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == SLSA_PROVENANCE
    assert digest.removeprefix("sha256:") in [s["digest"]["sha256"] for s in statement["subject"]]
    return statement


def test_provenance_records_the_build_and_verifies(signed, keys, signer, client_env, api):
    """The signer prints the statement once it verifies; what it says is
    what went in: this commit, Cargo.lock, the Dockerfile, the builder
    image, the command."""
    name = "verifier"
    index_digest = signed["digests"][name]
    platforms = platform_digests(api, name, index_digest)
    proc = run_signer(signer, "verify-attestation", "--key", str(keys["release"]["pub"]),
                      f"{signed['prefix']}/{name}:{TAG}", env=client_env)
    assert proc.returncode == 0, proc.stderr
    statement = json.loads(proc.stdout)
    subjects = {s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects == {d.removeprefix("sha256:") for d in [index_digest, *platforms.values()]}
    assert {s["name"] for s in statement["subject"]} == {f"{signed['prefix']}/{name}"}
    definition = statement["predicate"]["buildDefinition"]
    dependencies = {d.get("name") or d["uri"].split("@")[0]: d for d in definition["resolvedDependencies"]}
    commit = e2e.run(["git", "rev-parse", "HEAD"]).stdout.strip()
    assert definition["externalParameters"]["source"]["digest"]["gitCommit"] == commit
    assert dependencies["Cargo.lock"]["digest"]["sha256"] == hashlib.sha256((ROOT / "Cargo.lock").read_bytes()).hexdigest()
    assert dependencies["docker/Dockerfile"]["digest"]["sha256"] == \
        hashlib.sha256((ROOT / "docker" / "Dockerfile").read_bytes()).hexdigest()
    builder = dependencies["docker-image://rust:1.95.0-slim-bookworm"]
    builder_id = e2e.run(["docker", "image", "inspect", "-f", "{{.Id}}", "rust:1.95.0-slim-bookworm"]).stdout.strip()
    assert builder["digest"]["sha256"] == builder_id.removeprefix("sha256:")
    command = definition["externalParameters"]["command"]
    assert command[0].endswith("scripts/publish.sh") and "--sign-key" in command, command
    assert keys["release"]["password"] not in json.dumps(statement)
    build = definition["externalParameters"]["build"]  # the host's platform last, as publish.sh builds
    assert build.startswith("scripts/build-images.sh --platform "), build
    assert sorted(build.split()[-1].split(",")) == ["linux/amd64", "linux/arm64"], build
    # The platform manifests carry the same statement.
    proc = run_signer(signer, "verify-attestation", "--key", str(keys["release"]["pub"]),
                      f"{signed['prefix']}/{name}@{platforms['arm64']}", env=client_env)
    assert proc.returncode == 0 and json.loads(proc.stdout) == statement, proc.stderr


def test_provenance_checks_out_independently(signed, keys, api):
    public_pem = keys["release"]["pub"].read_bytes()
    for name, index_digest in signed["digests"].items():
        repository = f"{NAMESPACE}/{name}"
        for digest in [index_digest, *platform_digests(api, name, index_digest).values()]:
            statement = independent_attestation(api, repository, digest, public_pem)
            assert statement["predicate"]["buildDefinition"]["externalParameters"]["image"] == \
                f"{signed['prefix']}/{name}:{TAG}"
            with pytest.raises(InvalidSignature):
                independent_attestation(api, repository, digest, keys["other"]["pub"].read_bytes())


def test_provenance_with_another_key_or_image_is_refused(signed, keys, signer, client_env, api):
    ref = f"{signed['prefix']}/creator:{TAG}"
    proc = run_signer(signer, "verify-attestation", "--key", str(keys["other"]["pub"]), ref, env=client_env)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "does not verify" in lines[0], proc.stderr
    # keycreator's statement copied next to another image (an unsigned copy
    # of creator's index): it names keycreator's digests.
    source, target = f"{NAMESPACE}/keycreator", f"{NAMESPACE}/creator"
    index_body, index_type = api.manifest(target, signed["digests"]["creator"])
    index = json.loads(index_body)
    index["annotations"] = {"org.example.copy": "provenance"}
    other_digest = api.put_manifest(target, "provenance-copied", json.dumps(index).encode(), index_type)
    body, media_type = api.manifest(source, signed["digests"]["keycreator"].replace(":", "-") + ".att")
    manifest = json.loads(body)
    for blob in [manifest["config"], *manifest["layers"]]:
        api.put_blob(target, api.blob(source, blob["digest"]))
    api.put_manifest(target, other_digest.replace(":", "-") + ".att", body, media_type)
    proc = run_signer(signer, "verify-attestation", "--key", str(keys["release"]["pub"]),
                      f"{signed['prefix']}/creator:provenance-copied", env=client_env)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "made for another image" in lines[0], proc.stderr
