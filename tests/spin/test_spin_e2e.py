"""The real creator and verifier under a real Spin CLI (`spin build`, `spin up`).

Spin is not installed by scripts/test.sh: set `SPIN=/path/to/spin` or put `spin`
on PATH, otherwise every test here is skipped. Each Spin runs from its own
temporary application directory (a copy of `spin.toml`, the `.wasm` files `spin
build` made, and the `key/` and `verifier-key/` directories written by the real
keycreator), with HOME and the XDG
directories in a temporary directory too, so neither the repository's `key/`
nor its `.spin/` is touched.

Checked: the reference flow, every status of the contract that Spin routes to
the components (405, 400, 413, 401 with its JSON body and `WWW-Authenticate`),
PyJWT interoperability both ways, tokens crossing between Spin and our runner
on the same key, and key rotation: with `spin up --direct-mounts` the running
Spin follows keycreator's rotation (current and previous key), while by
default Spin copies the `files` at start-up and sees a new key only after a
restart. Under EdDSA (spin.toml's `token_alg` variable, set with `spin up
--variable`) Spin serves the JWK Set and the verifier's directory holds public
keys only.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from helpers import free_port, run_checked  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def find_spin() -> str | None:
    if os.environ.get("SPIN"):
        return os.environ["SPIN"]
    return shutil.which("spin")


SPIN = find_spin()
pytestmark = pytest.mark.skipif(
    SPIN is None, reason="Spin's CLI not found: set SPIN=/path/to/spin or put spin on PATH")

OLD_SECRET = "spin-e2e-secret"
NEW_SECRET = "spin-e2e-rotated-secret"
# spin.toml's TOKEN_TTL_SECONDS for the creator.
SPIN_TTL = 300
GOOD_CREATE = b'{"username": "testname", "password": "pass"}'


def key_text(secret: str) -> str:
    """What keycreator writes for `secret`: `echo "$KEY" | sha512sum | head -c 128`."""
    return hashlib.sha512(f"{secret}\n".encode()).hexdigest()


def kid(secret: str) -> str:
    """The `kid` of tokens signed with `secret`'s key."""
    return hashlib.sha256(key_text(secret).encode()).hexdigest()[:16]


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode()

    def error(self) -> tuple[str, str]:
        """The `{"error", "detail"}` body every error of the contract carries."""
        assert self.headers.get("content-type") == "application/json", self
        parsed = json.loads(self.body)
        assert set(parsed) == {"error", "detail"}, parsed
        return parsed["error"], parsed["detail"]

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.headers}, {self.body[:300]!r})"


def request(port: int, method: str, path: str, body: bytes | None = None) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, headers, response.read())
    finally:
        connection.close()


class Server:
    """A host serving the contract on 127.0.0.1:port: POST /create and /verifier."""

    port: int
    process: subprocess.Popen

    def post(self, path: str, body: bytes | str) -> Reply:
        return request(self.port, "POST", path, body.encode() if isinstance(body, str) else body)

    def create(self, username: str = "testname") -> str:
        reply = self.post("/create", json.dumps({"username": username, "password": "pass"}))
        assert reply.status == 200, reply
        assert reply.headers["content-type"].startswith("text/plain"), reply
        return reply.text

    def verify(self, token: str) -> Reply:
        return self.post("/verifier", json.dumps({"token": token}))

    def wait_serving(self, path: str, status: int, timeout: float, failure: Callable[[], str]):
        """Polls GET `path` until it answers `status`; stops the server and
        raises with `failure()` if the process exits or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if request(self.port, "GET", path).status == status:
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(failure())
            time.sleep(0.05)


def spin_env(home: Path) -> dict[str, str]:
    """Spin's caches, plugins and temporary directories (`spin up` copies the
    `files` of the components into one) under `home`, not the user's. The Rust
    toolchain that `spin build` runs stays the user's: rustup and cargo find it
    through HOME unless CARGO_HOME and RUSTUP_HOME say otherwise."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    user_home = Path.home()
    return {**os.environ, "CARGO_HOME": os.environ.get("CARGO_HOME", str(user_home / ".cargo")),
            "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(user_home / ".rustup")),
            "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"),
            "TMPDIR": str(home / "tmp")}


class Spin(Server):
    """`spin up` on the application directory `app`, in its own process group."""

    def __init__(self, spin: str, app: Path, home: Path, *args: str):
        self.port = free_port()
        self.app = app
        self.log = (app / f"spin-{self.port}.log").open("wb")
        env = {**spin_env(home), "RUST_LOG": "warn"}
        self.process = subprocess.Popen(
            [spin, "up", "--from", str(app / "spin.toml"),
             "--listen", f"127.0.0.1:{self.port}", *args],
            cwd=app, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.logfile = Path(self.log.name)
        # The creator itself answers (405): Spin serves and instantiates it.
        # Spin compiles both components at start-up, hence the time allowed.
        self.wait_serving("/create", 405, 180,
                          lambda: f"spin up did not serve:\n{self.logfile.read_text()}")

    def stop(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        # Anything Spin left behind in its group.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()


class Runner(Server):
    """Our runner serving one component with the key directory, as the images run it."""

    def __init__(self, runner: Path, component: Path, keydir: Path):
        self.port = free_port()
        self.process = subprocess.Popen(
            [runner, "--addr", f"127.0.0.1:{self.port}", "--no-access-log",
             "--dir", f"{keydir}::/usr/share/key",
             "--env-from-file", f"SIGNING_KEY={keydir / 'key.txt'}", component],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        self.wait_serving("/healthz", 200, 60,
                          lambda: f"runner did not start: {self.process.stderr.read().decode()}")

    def stop(self):
        self.process.kill()
        self.process.wait()


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def spin() -> str:
    path = shutil.which(SPIN) if SPIN else None
    if path is None:
        pytest.fail(f"SPIN={SPIN} is not an executable file")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("spin "), out
    return path


@pytest.fixture(scope="session")
def spin_home(tmp_path_factory) -> Path:
    """HOME and XDG directories of every Spin here (its caches and plugins), shared
    so that its compilation cache, if any, serves the later start-ups."""
    return tmp_path_factory.mktemp("spin-home")


@pytest.fixture(scope="session")
def built(spin, spin_home, binaries) -> dict[str, Path]:
    """`spin build` of the repository's manifest: the cargo builds it runs are those
    scripts/test.sh ran already, so they only confirm the .wasm files are current."""
    run_checked([spin, "build", "--from", str(ROOT / "spin.toml")], env=spin_env(spin_home))
    spin_build = ROOT / "target" / "wasm32-wasip2" / "spin"
    return {**binaries, **{f"spin-{name}": spin_build / f"{name}.wasm"
                           for name in ("creator", "verifier")}}


def write_key(keycreator: Path, keydir: Path, secret: str, previous: str | None = None,
              alg: str = "HS256"):
    """Runs the real keycreator on `keydir` (the creator's) and on its sibling
    `verifier-key` (the verifier's), as a deployment (or a rotation) does."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KEY", "KEY_PREVIOUS", "KEY_NEXT", "TOKEN_ALG", "KEYS_FOR")}
    env.update(KEY=secret, TOKEN_ALG=alg)
    if previous is not None:
        env["KEY_PREVIOUS"] = previous
    for role, directory in (("verifier", keydir.parent / "verifier-key"), ("creator", keydir)):
        directory.mkdir(exist_ok=True)
        run_checked([str(keycreator)], env={**env, "KEYS_FOR": role,
                                            "KEY_FILE": str(directory / "key.txt")}, timeout=30)


def make_app(built: dict[str, Path], directory: Path, secret: str = OLD_SECRET,
             alg: str = "HS256") -> Path:
    """An application directory: the repository's spin.toml, the built components
    where it expects them, and the key directories written by keycreator."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "spin.toml", directory / "spin.toml")
    wasm = directory / "target" / "wasm32-wasip2" / "spin"
    wasm.mkdir(parents=True)
    for name in ("creator", "verifier"):
        shutil.copy(built[f"spin-{name}"], wasm / f"{name}.wasm")
    write_key(built["keycreator"], directory / "key", secret, alg=alg)
    if alg == "HS256":
        assert (directory / "key" / "key.txt").read_text() == key_text(secret)
    return directory


@pytest.fixture(scope="module")
def served(spin, spin_home, built, tmp_path_factory):
    """One Spin with the default settings, shared by the contract tests."""
    app = make_app(built, tmp_path_factory.mktemp("spin-app"))
    server = Spin(spin, app, spin_home)
    yield server
    server.stop()


@pytest.fixture
def start_spin(spin, spin_home):
    """start_spin(app, *args): a Spin stopped at the end of the test."""
    started: list[Spin] = []

    def start(app: Path, *args: str) -> Spin:
        server = Spin(spin, app, spin_home, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def pyjwt_token(secret: str, username: str, *, lifetime: int = 60, algorithm: str = "HS256",
                headers: dict | None = None) -> str:
    now = int(time.time())
    return jwt.encode({"username": username, "iat": now, "exp": now + lifetime},
                      key_text(secret), algorithm=algorithm, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assert_401(spin: Spin, token: str, detail_contains: str = ""):
    reply = spin.verify(token)
    assert reply.status == 401, (token[:80], reply)
    error, detail = reply.error()
    assert error == "invalid_token"
    assert detail_contains in detail, detail
    assert reply.headers.get("www-authenticate") == 'Bearer error="invalid_token"'


# --------------------------------------------------------------------------
# The contract under Spin


def test_reference_flow_create_then_verify(served):
    token = served.create("testname")
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": kid(OLD_SECRET)}
    reply = served.verify(token)
    assert (reply.status, reply.text) == (200, "testname")
    assert reply.headers["content-type"].startswith("text/plain")


def test_spin_tokens_decode_in_pyjwt_with_the_manifest_ttl(served):
    token = served.create("alice")
    claims = jwt.decode(token, key_text(OLD_SECRET), algorithms=["HS256"],
                        options={"require": ["exp", "iat"]})
    assert claims["username"] == "alice"
    assert claims["exp"] - claims["iat"] == SPIN_TTL
    assert "nbf" not in claims


def test_pyjwt_tokens_verify_under_spin(served):
    reply = served.verify(pyjwt_token(OLD_SECRET, "from-python"))
    assert (reply.status, reply.text) == (200, "from-python")
    # With the kid of the key, as our creator writes it.
    reply = served.verify(pyjwt_token(OLD_SECRET, "with-kid", headers={"kid": kid(OLD_SECRET)}))
    assert (reply.status, reply.text) == (200, "with-kid")


def test_every_bad_token_is_401_with_json_and_www_authenticate(served):
    good = served.create("eve")
    header, payload, signature = good.split(".")
    forged = b64(b'{"username":"admin","iat":1,"exp":99999999999}')
    assert_401(served, f"{header}.{forged}.{signature}", "signature")
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    assert_401(served, f"{header}.{payload}.{flipped}")
    # Correctly signed but expired (PyJWT), with and without our kid.
    assert_401(served, pyjwt_token(OLD_SECRET, "old", lifetime=-60), "expired")
    assert_401(served, pyjwt_token(OLD_SECRET, "old", lifetime=-60,
                                   headers={"kid": kid(OLD_SECRET)}), "expired")
    # Wrong algorithms: none, HS384/HS512 with the same secret, RS256.
    none, rs256 = b64(b'{"alg":"none","typ":"JWT"}'), b64(b'{"alg":"RS256","typ":"JWT"}')
    assert_401(served, f"{none}.{payload}.")
    assert_401(served, pyjwt_token(OLD_SECRET, "x", algorithm="HS384"), "only HS256")
    assert_401(served, pyjwt_token(OLD_SECRET, "x", algorithm="HS512"), "only HS256")
    assert_401(served, f"{rs256}.{payload}.{b64(bytes([7]) * 256)}", "only HS256")
    # Another key, and a kid that names no accepted key.
    assert_401(served, pyjwt_token(NEW_SECRET, "x"), "signature")
    assert_401(served, pyjwt_token(OLD_SECRET, "x", headers={"kid": "0123456789abcdef"}),
               "unknown key id")
    # Garbage.
    for garbage in ["", "garbage", "a.b.c", "....", "x" * 20_000]:
        assert_401(served, garbage)


@pytest.mark.parametrize(("path", "body", "status", "error"), [
    ("/create", b"{not json", 400, "malformed_json"),
    ("/create", b"", 400, "malformed_json"),
    ("/create", b'{"username":"a"}', 400, "invalid_request"),
    ("/create", b'{"password":"a"}', 400, "invalid_request"),
    ("/create", b'{"username":"","password":"a"}', 400, "invalid_request"),
    ("/create", json.dumps({"username": "u" * 20_000, "password": "a"}).encode(), 400,
     "invalid_request"),
    ("/create", b"[1,2]", 400, "invalid_request"),
    ("/verifier", b"{}", 400, "invalid_request"),
    ("/verifier", b'{"token":5}', 400, "invalid_request"),
    ("/verifier", b"\x00\x01", 400, "malformed_json"),
    ("/verifier", b"{not json", 400, "malformed_json"),
    ("/create", b" " * (64 * 1024 + 1), 413, "payload_too_large"),
    ("/verifier", b" " * (64 * 1024 + 1), 413, "payload_too_large"),
    # Spin has no body limit of its own: the component refuses it as well.
    ("/verifier", b"a" * (2 << 20), 413, "payload_too_large"),
])
def test_malformed_and_oversized_requests_are_4xx_with_json_errors(served, path, body, status,
                                                                    error):
    reply = served.post(path, body)
    assert reply.status == status, reply
    assert reply.error()[0] == error


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/create"), ("PUT", "/create"), ("DELETE", "/create"),
    ("GET", "/verifier"), ("PATCH", "/verifier"), ("DELETE", "/verifier"),
])
def test_wrong_methods_are_405_with_allow(served, method, path):
    reply = request(served.port, method, path, b"{}")
    assert reply.status == 405, reply
    assert reply.headers.get("allow") == "POST"
    assert reply.error()[0] == "method_not_allowed"


def test_paths_spin_does_not_route_are_404(served):
    # Spin answers these itself (the health endpoints serve the runner deployments).
    for method, path in [("GET", "/healthz"), ("GET", "/readyz"), ("POST", "/"),
                         ("POST", "/nope")]:
        assert request(served.port, method, path).status == 404, (method, path)


# --------------------------------------------------------------------------
# Spin and our runner on the same key


def test_tokens_cross_between_spin_and_the_runner(served, built, cwasm):
    keydir = served.app / "key"
    creator = Runner(built["runner"], cwasm("creator"), keydir)
    verifier = Runner(built["runner"], cwasm("verifier"), keydir)
    try:
        from_spin = served.create("made-by-spin")
        reply = verifier.verify(from_spin)
        assert (reply.status, reply.text) == (200, "made-by-spin")
        from_runner = creator.create("made-by-runner")
        assert jwt.get_unverified_header(from_runner)["kid"] == kid(OLD_SECRET)
        reply = served.verify(from_runner)
        assert (reply.status, reply.text) == (200, "made-by-runner")
        # And both refuse the other's expired and tampered tokens alike.
        expired = pyjwt_token(OLD_SECRET, "old", lifetime=-1, headers={"kid": kid(OLD_SECRET)})
        assert verifier.verify(expired).status == served.verify(expired).status == 401
    finally:
        creator.stop()
        verifier.stop()


# --------------------------------------------------------------------------
# Key rotation


def test_rotation_with_direct_mounts_needs_no_restart(built, start_spin, tmp_path):
    """keycreator rotates the key under a running `spin up --direct-mounts`: the old
    key's tokens verify during the window, new tokens use the new key, and once the
    window closes the old key's tokens are refused; one Spin process throughout."""
    app = make_app(built, tmp_path / "app")
    keydir = app / "key"
    server = start_spin(app, "--direct-mounts")
    old = server.create("old")
    assert jwt.get_unverified_header(old)["kid"] == kid(OLD_SECRET)
    old_go = pyjwt_token(OLD_SECRET, "old-go")  # no kid, as the reference Go creator issues them

    # Open the window: sign with the new key, accept both.
    write_key(built["keycreator"], keydir, NEW_SECRET, previous=OLD_SECRET)
    assert (keydir / "previous-key.txt").read_text() == key_text(OLD_SECRET)
    new = server.create("new")
    assert jwt.get_unverified_header(new)["kid"] == kid(NEW_SECRET)
    jwt.decode(new, key_text(NEW_SECRET), algorithms=["HS256"])
    for token, username in [(old, "old"), (new, "new"), (old_go, "old-go"),
                            (pyjwt_token(NEW_SECRET, "new-go"), "new-go")]:
        reply = server.verify(token)
        assert (reply.status, reply.text) == (200, username), reply

    # Close the window.
    write_key(built["keycreator"], keydir, NEW_SECRET)
    assert not (keydir / "previous-key.txt").exists()
    assert_401(server, old, "unknown key id")
    assert_401(server, old_go, "signature")
    reply = server.verify(new)
    assert (reply.status, reply.text) == (200, "new")
    assert server.process.poll() is None, "Spin must not have restarted"


def test_without_direct_mounts_spin_sees_a_rotated_key_only_after_restart(built, start_spin,
                                                                         tmp_path):
    """By default Spin copies the `files` directories at start-up: a key written
    afterwards is not seen by the running Spin, only by the next one."""
    app = make_app(built, tmp_path / "app")
    server = start_spin(app)
    assert jwt.get_unverified_header(server.create())["kid"] == kid(OLD_SECRET)

    write_key(built["keycreator"], app / "key", NEW_SECRET, previous=OLD_SECRET)
    assert jwt.get_unverified_header(server.create())["kid"] == kid(OLD_SECRET)
    assert_401(server, pyjwt_token(NEW_SECRET, "new-go"), "signature")

    server.stop()
    restarted = start_spin(app)
    assert jwt.get_unverified_header(restarted.create())["kid"] == kid(NEW_SECRET)
    old = pyjwt_token(OLD_SECRET, "old", headers={"kid": kid(OLD_SECRET)})
    reply = restarted.verify(old)
    assert (reply.status, reply.text) == (200, "old")


# --------------------------------------------------------------------------
# EdDSA: settings from spin.toml's variables, the JWK Set served by Spin


def test_eddsa_through_spin_variables_serves_the_key_set(built, start_spin, tmp_path):
    app = make_app(built, tmp_path / "app", alg="EdDSA")
    assert sorted(p.name for p in (app / "verifier-key").iterdir()) == ["jwks.json"]
    server = start_spin(app, "--variable", "token_alg=EdDSA",
                        "--variable", "jwks_max_age_seconds=60")
    reply = request(server.port, "GET", "/.well-known/jwks.json")
    assert reply.status == 200, reply
    published = json.loads(reply.body)
    assert published == json.loads((app / "key" / "jwks.json").read_text())
    assert all("d" not in key for key in published["keys"])
    token = server.create("edwards")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] in [key["kid"] for key in published["keys"]]
    public = jwt.PyJWK(published["keys"][0]).key
    assert jwt.decode(token, public, algorithms=["EdDSA"])["username"] == "edwards"
    reply = server.verify(token)
    assert (reply.status, reply.text) == (200, "edwards")
    # An HS256 token of the same secret: not this deployment's algorithm.
    assert_401(server, pyjwt_token(OLD_SECRET, "hmac"))
