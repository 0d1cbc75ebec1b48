"""Helpers of tests/interop: a deployment of the real binaries (keycreator
twice, the creator and the verifier under the runner, with the flags of
docker/Dockerfile), HTTP calls, RFC 7638 thumbprints computed by hand, raw
token signing for forged tokens, and the out-of-process clients (npm `jose`,
Go `golang-jwt`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "runner"))
from runner_process import Runner  # noqa: E402

JWKS_PATH = "/.well-known/jwks.json"
JWKS_CONTENT_TYPE = "application/jwk-set+json"
# Where the images mount the key directory, and so where the components look
# for it (their default KEY_FILE is /usr/share/key/key.txt).
GUEST_KEY_DIR = "/usr/share/key"
# The order of the P-256 group: an ES256 signature's s is "low" when <= N/2.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# The members RFC 7638 hashes, per key type (section 3.2), and the private
# members no published key may carry (RFC 7517, 7518, 8037).
THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
# Settings the keycreator and the runner must not inherit from the shell.
KEY_SETTINGS = ("KEY", "KEY_NEXT", "KEY_PREVIOUS", "KEYS_FOR", "KEY_FILE", "TOKEN_ALG")


# --- encoding ------------------------------------------------------------------


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segments(token: str) -> tuple[dict, dict, bytes]:
    """A compact JWS's header, claims and signature, unverified."""
    header, claims, signature = token.split(".")
    return json.loads(b64u_decode(header)), json.loads(b64u_decode(claims)), b64u_decode(signature)


def thumbprint(jwk: dict) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, no whitespace."""
    members = THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(canonical.encode()).digest())


def is_high_s(token: str) -> bool:
    """Whether an ES256 token's signature has s > n/2."""
    signature = segments(token)[2]
    return int.from_bytes(signature[32:], "big") > P256_ORDER // 2


# --- raw signing (forged tokens) -----------------------------------------------


def private_key_from_jwk(jwk: dict):
    """The `cryptography` private key of an OKP Ed25519 or EC P-256 JWK."""
    d = b64u_decode(jwk["d"])
    if jwk["kty"] == "OKP":
        return ed25519.Ed25519PrivateKey.from_private_bytes(d)
    return ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1())


def public_jwk(private_key) -> dict:
    """The public JWK (with its thumbprint as kid) of a `cryptography` key."""
    public = private_key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
    else:
        numbers = public.public_numbers()
        jwk = {"kty": "EC", "crv": "P-256",
               "x": b64u(numbers.x.to_bytes(32, "big")), "y": b64u(numbers.y.to_bytes(32, "big"))}
    return {**jwk, "kid": thumbprint(jwk)}


def new_private_key(alg: str):
    return ed25519.Ed25519PrivateKey.generate() if alg == "EdDSA" else ec.generate_private_key(ec.SECP256R1())


def sign_raw(header: dict, claims: dict, *, key=None, hmac_key: bytes | None = None) -> str:
    """A compact JWS over exactly this header and these claims.

    `key` signs by its type (Ed25519, or ECDSA P-256 put in low-S form, so
    that a forged ES256 token is never refused merely for a high S);
    `hmac_key` signs HMAC-SHA-256; neither gives an empty signature.
    """
    encode = lambda value: b64u(json.dumps(value, separators=(",", ":")).encode())  # noqa: E731
    signing_input = f"{encode(header)}.{encode(claims)}".encode()
    if hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input, hashlib.sha256).digest()
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(signing_input)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        s = min(s, P256_ORDER - s)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = b""
    return f"{signing_input.decode()}.{b64u(signature)}"


# --- HTTP ----------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(port: int, method: str, path: str, body: Any = None) -> Answer:
    """One request to 127.0.0.1:port; a JSON body when `body` is given."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


# --- a deployment of the real binaries -----------------------------------------


@dataclass
class Service:
    name: str
    runner: Runner

    @property
    def port(self) -> int:
        return self.runner.port

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{JWKS_PATH}"

    def call(self, method: str, path: str, body: Any = None) -> Answer:
        return call(self.port, method, path, body)


@dataclass
class Deployment:
    """keycreator run twice from one KEY (KEYS_FOR=creator, KEYS_FOR=verifier)
    into two directories, and the creator and the verifier under the runner,
    each given only its own directory, as the images are."""

    binaries: dict[str, Path]
    cwasm: Any
    root: Path
    alg: str  # "EdDSA", "ES256", or "HS256" / "" for the default
    key: str
    issuer: str | None = None
    audience: str | None = None
    jwks_max_age: int | None = None
    ttl: int = 300
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def creator(self) -> Service:
        return self.services["creator"]

    @property
    def verifier(self) -> Service:
        return self.services["verifier"]

    def key_dir(self, role: str) -> Path:
        return self.root / role

    def write_keys(self, role: str, key: str, *, key_next: str | None = None,
                   key_previous: str | None = None) -> str:
        """Runs keycreator for `role`'s directory; returns its log line."""
        directory = self.key_dir(role)
        directory.mkdir(parents=True, exist_ok=True)
        env = {name: value for name, value in os.environ.items() if name not in KEY_SETTINGS}
        env.update(KEY=key, KEY_FILE=str(directory / "key.txt"), TOKEN_ALG=self.alg)
        if self.alg in ("EdDSA", "ES256"):
            env["KEYS_FOR"] = role
        if key_next:
            env["KEY_NEXT"] = key_next
        if key_previous:
            env["KEY_PREVIOUS"] = key_previous
        proc = subprocess.run([str(self.binaries["keycreator"])], env=env, text=True,
                              capture_output=True, timeout=30)
        assert proc.returncode == 0, f"keycreator ({role}) exited {proc.returncode}: {proc.stderr}"
        return proc.stdout

    def runner_args(self, role: str) -> list[str]:
        """The flags of docker/Dockerfile's ENTRYPOINT, with this key directory."""
        directory = self.key_dir(role)
        args = ["--dir", f"{directory}::{GUEST_KEY_DIR}",
                "--env-from-file", f"SIGNING_KEY={directory / 'key.txt'}"]
        if role == "creator":
            args += ["--env-from-file", f"SIGNING_JWK={directory / 'signing-key.json'}"]
        args += ["--env-from-file", f"JWKS={directory / 'jwks.json'}", "--env", "TOKEN_ALG"]
        if role == "creator":
            args += ["--env", "TOKEN_TTL_SECONDS"]
        args += ["--env", "TOKEN_ISSUER", "--env", "TOKEN_AUDIENCE", "--env", "JWKS_MAX_AGE_SECONDS"]
        return args

    def runner_env(self) -> dict[str, str]:
        # Every passed-through variable gets a value here, so that nothing
        # comes from the shell running the tests; empty means unset.
        return {
            "TOKEN_ALG": self.alg,
            "TOKEN_TTL_SECONDS": str(self.ttl),
            "TOKEN_ISSUER": self.issuer or "",
            "TOKEN_AUDIENCE": self.audience or "",
            "JWKS_MAX_AGE_SECONDS": "" if self.jwks_max_age is None else str(self.jwks_max_age),
        }

    def start(self, role: str) -> Service:
        runner = Runner(self.binaries["runner"], self.cwasm(role), *self.runner_args(role),
                        env=self.runner_env())
        service = Service(role, runner)
        self.services[role] = service
        deadline = time.monotonic() + 15
        while (answer := service.call("GET", "/readyz")).status != 200:
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{role} never became ready: {answer.status} {answer.body!r}")
            time.sleep(0.05)
        return service

    def up(self) -> Deployment:
        for role in ("creator", "verifier"):
            self.write_keys(role, self.key)
        try:
            for role in ("creator", "verifier"):
                self.start(role)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self) -> None:
        """Stops both services and starts them again on new ports."""
        self.stop()
        for role in ("creator", "verifier"):
            self.start(role)

    def stop(self) -> None:
        for service in self.services.values():
            service.runner.stop()
        self.services.clear()

    # --- what the tests ask of it ---

    def issue(self, username: str) -> str:
        answer = self.creator.call("POST", "/create", {"username": username, "password": "pw"})
        assert answer.status == 200, f"/create: {answer.status} {answer.body!r}"
        assert answer.headers["content-type"].startswith("text/plain"), answer.headers
        return answer.body.decode()

    def verify(self, token: str) -> Answer:
        return self.verifier.call("POST", "/verifier", {"token": token})

    def signing_jwk(self) -> dict:
        """The creator's private key as keycreator wrote it."""
        return json.loads((self.key_dir("creator") / "signing-key.json").read_text())

    def key_set(self, role: str) -> dict:
        answer = self.services[role].call("GET", JWKS_PATH)
        assert answer.status == 200, f"{role} {JWKS_PATH}: {answer.status} {answer.body!r}"
        return answer.json()

    def claims(self, username: str, **extra: Any) -> dict:
        """Claims as this deployment's creator writes them."""
        now = int(time.time())
        claims: dict[str, Any] = {"username": username, "iat": now, "exp": now + self.ttl}
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        claims.update(extra)
        return {name: value for name, value in claims.items() if value is not None}


# --- out-of-process clients ----------------------------------------------------


class BatchClient:
    """A client program taking {"verify": [...], "sign": [...]} on stdin and
    answering {"verify": [...], "sign": [...]} on stdout."""

    def __init__(self, name: str, command: list[str], cwd: Path, env: dict[str, str] | None = None):
        self.name, self.command, self.cwd, self.env = name, command, cwd, env

    def run(self, verify: list[dict] = (), sign: list[dict] = ()) -> dict:
        proc = subprocess.run(self.command, cwd=self.cwd, env=self.env, text=True, capture_output=True,
                              input=json.dumps({"verify": list(verify), "sign": list(sign)}), timeout=60)
        assert proc.returncode == 0, f"{self.name} exited {proc.returncode}: {proc.stderr}"
        return json.loads(proc.stdout)

    def verify(self, tasks: list[dict]) -> list[dict]:
        return self.run(verify=tasks)["verify"]

    def sign(self, tasks: list[dict]) -> list[str]:
        return self.run(sign=tasks)["sign"]


def jose_client() -> BatchClient | str:
    """The npm `jose` client, its locked version installed with `npm ci` into
    tests/interop/node_modules (gitignored); a reason when Node is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "node and npm are needed for the npm jose client; install Node.js 20"
    lock = json.loads((HERE / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/jose"]["version"]
    installed = HERE / "node_modules" / "jose" / "package.json"
    if not installed.is_file() or json.loads(installed.read_text()).get("version") != wanted:
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, text=True,
                              capture_output=True, timeout=300)
        assert proc.returncode == 0, f"npm ci exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return BatchClient("jose", [node, str(HERE / "jose_client.mjs")], HERE)


GO_JWT_SOURCE = Path("/usr/share/gocode/src/github.com/golang-jwt/jwt")
GO_PACKAGES = ("golang-go", "golang-github-golang-jwt-jwt-dev")


def go_client(build_dir: Path) -> BatchClient | str:
    """The golang-jwt v4 client, built offline in GOPATH mode from Debian's
    packages, which are installed with apt-get when missing (as root); a
    reason when that is not possible."""
    if not (shutil.which("go") and GO_JWT_SOURCE.is_dir()):
        apt_get = shutil.which("apt-get")
        if not apt_get or os.geteuid() != 0:
            return f"Go baseline needs {' '.join(GO_PACKAGES)} and apt-get as root to install them"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [apt_get, "install", "-y", "-qq", "--no-install-recommends", *GO_PACKAGES]
        proc = subprocess.run(install, env=env, text=True, capture_output=True, timeout=600)
        if proc.returncode != 0:
            subprocess.run([apt_get, "update", "-qq"], env=env, capture_output=True, timeout=300)
            proc = subprocess.run(install, env=env, text=True, capture_output=True, timeout=600)
        if proc.returncode != 0 or not (shutil.which("go") and GO_JWT_SOURCE.is_dir()):
            return f"apt-get could not install {' '.join(GO_PACKAGES)}: {proc.stderr.strip()[-300:]}"
    # GOPATH mode: Debian's packages, and the repository's own (wasmjwt/jwkkey).
    gopath = f"{ROOT / 'scripts' / 'gopath'}:{GO_JWT_SOURCE.parents[3]}"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": gopath,
           "GOCACHE": str(build_dir / "cache"), "GOFLAGS": ""}
    binary = build_dir / "go_client"
    proc = subprocess.run([shutil.which("go"), "build", "-o", str(binary), "./go_client/main.go"],
                          cwd=HERE, env=env, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, f"go build exited {proc.returncode}:\n{proc.stderr}"
    return BatchClient("go", [str(binary)], HERE)
