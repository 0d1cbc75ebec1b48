"""End-to-end tests of the container images and compose.yaml.

Builds the three images (scripts/build-images.sh), starts the stack with
`compose up -d` under its own project name, and talks to it over 127.0.0.1.
The stack is always taken down (with its volume) at the end.

    python3 -m pytest -v tests/e2e/test_compose.py

Needs Docker (scripts/ensure-docker.sh starts it when run as root) and either
`docker compose` (v2) or docker-compose >= 1.29. Without them every test
fails with the reason; nothing is skipped.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from rotation_load import TokenLoad, token_kid  # noqa: E402
PROJECT = "wasmjwt-e2e"
KEY = "e2e-signing-secret-not-for-production"
TOKEN_TTL = 120  # not the default 300: shows the setting reaches the component
CREATOR_PORT = int(os.environ.get("E2E_CREATOR_PORT", "8000"))
VERIFIER_PORT = int(os.environ.get("E2E_VERIFIER_PORT", "5000"))
CREATOR = f"http://127.0.0.1:{CREATOR_PORT}"
VERIFIER = f"http://127.0.0.1:{VERIFIER_PORT}"
IMAGES = {name: f"wasm-jwt/{name}:0.1.0" for name in ("keycreator", "creator", "verifier")}
SERVICES = ("creator", "verifier")
BUILD_TIMEOUT = 90 * 60
HEALTH_TIMEOUT = 90
SHELLS = {"sh", "bash", "ash", "dash", "zsh", "busybox", "toybox"}


# --- helpers -------------------------------------------------------------------


def run(cmd, *, env=None, timeout=120, check=True, capture=True):
    """Run a command; on failure raise with its output."""
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, timeout=timeout, text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout or ''}")
    return proc


@functools.cache
def compose_command() -> tuple[str, ...]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ("docker", "compose")
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    pytest.fail("neither `docker compose` nor `docker-compose` works: install Compose")


# Settings over compose.yaml's defaults (test_compose_asymmetric.py: TOKEN_ALG).
STACK_ENV: dict[str, str] = {}


def compose_env(key: str | None = KEY) -> dict[str, str]:
    env = dict(os.environ, CREATOR_PORT=str(CREATOR_PORT), VERIFIER_PORT=str(VERIFIER_PORT),
               TOKEN_TTL_SECONDS=str(TOKEN_TTL), **STACK_ENV)
    env.pop("KEY", None)
    if key is not None:
        env["KEY"] = key
    return env


# Compose files applied over compose.yaml (test_arm64.py: limits for emulation).
OVERRIDE_FILES: list[str] = []


def compose(*args, project=PROJECT, key: str | None = KEY, **kw):
    files = [arg for path in OVERRIDE_FILES for arg in ("-f", path)]
    cmd = [*compose_command(), "-p", project, "-f", str(ROOT / "compose.yaml"), *files, *args]
    return run(cmd, env=compose_env(key), **kw)


def container_id(service: str) -> str:
    """The service's container, running or exited (compose v1 and v2 alike)."""
    ids = run(["docker", "ps", "-a", "-q",
               "--filter", f"label=com.docker.compose.project={PROJECT}",
               "--filter", f"label=com.docker.compose.service={service}"]).stdout.split()
    assert len(ids) == 1, f"expected one {service} container, got {ids}"
    return ids[0]


def inspect(ref: str) -> dict:
    return json.loads(run(["docker", "inspect", ref]).stdout)[0]


def http(method: str, url: str, body: dict | None = None):
    """(status, content type, body text); HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def create_token(username="testname", password="pass") -> str:
    status, ctype, body = http("POST", f"{CREATOR}/create", {"username": username, "password": password})
    assert status == 200, (status, body)
    assert ctype.startswith("text/plain"), ctype
    return body.strip()


def wait_healthy(deadline: float):
    pending = set(SERVICES)
    while pending and time.monotonic() < deadline:
        for service in sorted(pending):
            state = inspect(container_id(service))["State"]
            health = state.get("Health", {}).get("Status")
            if health == "healthy":
                pending.discard(service)
            elif not state["Running"]:
                logs = compose("logs", "--no-color", service, check=False).stdout
                pytest.fail(f"{service} is not running ({state['Status']}, exit {state['ExitCode']}):\n{logs}")
        if pending:
            time.sleep(1)
    if pending:
        logs = compose("logs", "--no-color", check=False).stdout
        pytest.fail(f"not healthy within {HEALTH_TIMEOUT}s: {sorted(pending)}\n{logs}")


# --- the stack -------------------------------------------------------------------


@contextlib.contextmanager
def running_stack(up_timeout: float = 120, health_timeout: float = HEALTH_TIMEOUT):
    """`compose up -d` of the images there are (no build), healthy, and always
    `down -v` afterwards (test_arm64.py and tests/registry use it too)."""
    compose("down", "-v", "--remove-orphans", timeout=60)  # leftovers of an aborted run
    try:
        compose("up", "-d", "--no-build", timeout=up_timeout)
        wait_healthy(time.monotonic() + health_timeout)
        yield
    finally:
        compose("down", "-v", "--remove-orphans", timeout=120, check=False)


def docker_with_images() -> None:
    """Docker running and the images built (a no-op when an earlier test built them)."""
    ensure = run(["scripts/ensure-docker.sh"], check=False)
    if ensure.returncode != 0:
        pytest.fail(f"Docker is not usable, so the e2e tests cannot run:\n{ensure.stdout}")
    run(["scripts/build-images.sh"], timeout=BUILD_TIMEOUT, capture=False)


@pytest.fixture(scope="module")
def stack():
    docker_with_images()
    with running_stack():
        yield


# --- tests -----------------------------------------------------------------------


def test_reference_flow(stack):
    token = create_token("testname", "pass")
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token), token
    status, ctype, body = http("POST", f"{VERIFIER}/verifier", {"token": token})
    assert status == 200, (status, body)
    assert ctype.startswith("text/plain"), ctype
    assert body.strip() == "testname"


def test_token_ttl_reaches_the_creator(stack):
    claims = json.loads(b64url_decode(create_token().split(".")[1]))
    assert claims["exp"] - claims["iat"] == TOKEN_TTL, claims


def test_health_endpoints(stack):
    for base in (CREATOR, VERIFIER):
        for path in ("/healthz", "/readyz"):
            status, _, body = http("GET", base + path)
            assert status == 200, (base + path, status, body)


@pytest.mark.parametrize("how", ["payload", "signature"])
def test_tampered_token_is_rejected(stack, how):
    header, payload, signature = create_token("testname", "pass").split(".")
    if how == "payload":  # claim to be someone else, keep the old signature
        claims = json.loads(b64url_decode(payload))
        forged = json.dumps(claims).replace("testname", "admin").encode()
        assert forged != json.dumps(claims).encode(), claims
        payload = b64url_encode(forged)
    else:  # a different, well-formed signature
        raw = bytearray(b64url_decode(signature))
        raw[0] ^= 0x01
        signature = b64url_encode(bytes(raw))
    status, ctype, body = http("POST", f"{VERIFIER}/verifier", {"token": f"{header}.{payload}.{signature}"})
    assert status == 401, (status, body)
    assert ctype.startswith("application/json"), ctype
    assert isinstance(json.loads(body), dict), body
    assert "testname" not in body and "admin" not in body


def test_the_key_set_route_is_not_found_under_hs256(stack):
    """HS256 has no public key: nothing to publish (EdDSA and ES256 in
    test_compose_asymmetric.py)."""
    for base in (CREATOR, VERIFIER):
        status, ctype, body = http("GET", f"{base}/.well-known/jwks.json")
        assert status == 404, (base, status, body)
        assert ctype.startswith("application/json"), ctype


def test_keycreator_exited_zero(stack):
    state = inspect(container_id("keycreator"))["State"]
    assert state["Status"] == "exited", state
    assert state["ExitCode"] == 0, state


def test_key_file_in_volume(stack):
    # `docker cp` reads the volume through the stopped keycreator container: no shell needed.
    proc = subprocess.run(["docker", "cp", f"{container_id('keycreator')}:/usr/share/key/key.txt", "-"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        member = tar.getmember("key.txt")
        content = tar.extractfile(member).read().decode().strip()
    assert re.fullmatch(r"[0-9a-f]{128}", content), content
    # Same as the reference `echo "$KEY" | sha512sum | head -c 128`.
    assert content == hashlib.sha512(f"{KEY}\n".encode()).hexdigest()
    assert member.uid == 65532, member.uid
    assert not member.mode & 0o007, f"key file is world-accessible: {oct(member.mode)}"


def test_no_container_runs_as_root(stack):
    for service in ("keycreator", *SERVICES):
        info = inspect(container_id(service))
        user = info["Config"]["User"]
        assert user, f"{service}: no user set (root)"
        uid = user.split(":")[0]
        assert uid not in ("0", "root"), f"{service} runs as {user}"
        assert info["HostConfig"]["ReadonlyRootfs"] is True, service


def test_services_are_hardened(stack):
    for service in SERVICES:
        info = inspect(container_id(service))
        host = info["HostConfig"]
        assert host["ReadonlyRootfs"] is True, service
        assert "ALL" in (host["CapDrop"] or []), host["CapDrop"]
        assert any(opt.startswith("no-new-privileges") for opt in host["SecurityOpt"] or []), host["SecurityOpt"]
        env_names = {e.split("=", 1)[0] for e in info["Config"]["Env"] or []}
        assert "KEY" not in env_names, f"{service} sees KEY"
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        assert mounts["/usr/share/key"]["RW"] is False, mounts
        # No swap: memory + swap limited to the memory limit (compose.yaml says why).
        assert host["Memory"] > 0 and host["MemorySwap"] == host["Memory"], (host["Memory"], host["MemorySwap"])
        for binding in host["PortBindings"].values():
            assert all(b["HostIp"] == "127.0.0.1" for b in binding), binding


def test_metrics_are_served_inside_but_not_published(stack):
    """The images serve Prometheus metrics on :9090 for scrapers on the
    compose network; compose publishes only the API ports on the host."""
    create_token()  # at least one request to count
    for service in SERVICES:
        cid = container_id(service)
        # The image has no shell or curl; its runner probes the endpoint.
        probe = run(["docker", "exec", cid, "/runner", "probe", "http://127.0.0.1:9090/metrics"], check=False)
        assert probe.returncode == 0, (service, probe.stdout)
        published = inspect(cid)["HostConfig"]["PortBindings"]
        assert "9090/tcp" not in published, published
    status, _, _ = http("GET", f"{CREATOR}/metrics")
    assert status == 404, "the API port serves the API alone"


def create_container(image: str) -> str:
    """`docker create` for the image's own platform (an arm64 image on an amd64
    machine too, without the platform warning); returns the container id."""
    info = inspect(image)
    proc = subprocess.run(["docker", "create", "--platform", f"{info['Os']}/{info['Architecture']}", image],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"docker create {image}: {proc.stderr}"
    return proc.stdout.strip()


def image_files(image: str) -> dict[str, tarfile.TarInfo]:
    """Every path in the image's filesystem, via `docker create` + `docker export`."""
    cid = create_container(image)
    try:
        proc = subprocess.run(["docker", "export", cid], capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
    finally:
        run(["docker", "rm", cid], check=False)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        return {m.name.strip("/"): m for m in tar.getmembers()}


@pytest.mark.parametrize("name", IMAGES)
def test_image_has_no_shell(stack, name):
    image = IMAGES[name]
    for shell in ("/bin/sh", "/bin/busybox"):
        proc = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", shell, image, "-c", "true"],
                   check=False)
        assert proc.returncode != 0, f"{image} ran {shell}"
    files = image_files(image)
    assert not {Path(p).name for p in files} & SHELLS, sorted(files)
    # Non-empty regular files: only what the Dockerfile put there (docker adds empty
    # /etc/hosts, /etc/resolv.conf, ... to every container).
    shipped = {p for p, m in files.items() if m.isfile() and m.size > 0}
    # The SBOMs (docs/supply-chain.md): one per program shipped.
    if name == "keycreator":
        expected = {"keycreator", "sbom/keycreator.cdx.json.gz"}
    else:
        expected = {"runner", f"{name}.cwasm", "sbom/runner.cdx.json.gz", f"sbom/{name}.cdx.json.gz"}
    assert shipped == expected, sorted(shipped)
    key_dir = files["usr/share/key"]
    assert key_dir.isdir() and key_dir.uid == 65532 and key_dir.gid == 65532, (key_dir.uid, key_dir.gid)


def test_image_metadata_and_sizes(stack, capsys):
    lines = []
    for name, image in IMAGES.items():
        info = inspect(image)
        config = info["Config"]
        assert config["User"] == "65532:65532", config["User"]
        labels = config["Labels"] or {}
        for label in ("title", "description", "source", "licenses", "version"):
            assert labels.get(f"org.opencontainers.image.{label}"), (image, label)
        assert labels["org.opencontainers.image.version"] == "0.1.0"
        if name == "keycreator":
            assert config["Entrypoint"] == ["/keycreator"]
            assert config.get("Healthcheck", {}).get("Test") == ["NONE"], config.get("Healthcheck")
        else:
            assert config["Healthcheck"]["Test"][0] == "CMD", config["Healthcheck"]
        size = info["Size"]
        lines.append(f"{image:28} {size / 1e6:7.2f} MB")
        # The size goals (docs/benchmarks.md): a file count, not a timing.
        limit = 1_000_000 if name == "keycreator" else 6_000_000
        assert size <= limit, f"{image} is {size} bytes, over the {limit}-byte goal"
    with capsys.disabled():
        print("\nimage sizes:\n  " + "\n  ".join(lines))


def test_compose_up_without_key_fails_naming_key(stack):
    start = time.monotonic()
    proc = compose("up", "-d", "--no-build", project=f"{PROJECT}-nokey", key=None, check=False, timeout=60)
    elapsed = time.monotonic() - start
    try:
        assert proc.returncode != 0, proc.stdout
        assert "KEY" in proc.stdout, proc.stdout
        assert elapsed < 20, f"took {elapsed:.1f}s to fail"
    finally:
        compose("down", "-v", project=f"{PROJECT}-nokey", check=False)


def rotate(step: str, key: str, previous: str | None = None, next_key: str | None = None):
    """scripts/rotate-key.sh STEP against the test stack, as an operator runs it."""
    env = compose_env(key) | {
        "COMPOSE_PROJECT_NAME": PROJECT,
        "COMPOSE_FILE": str(ROOT / "compose.yaml"),
        "COMPOSE": " ".join(compose_command()),
    }
    for name, value in (("KEY_PREVIOUS", previous), ("KEY_NEXT", next_key)):
        env.pop(name, None)
        if value is not None:
            env[name] = value
    return run(["scripts/rotate-key.sh", step], env=env, timeout=120)


def sha256_kid(secret: str) -> str:
    """The kid of the key derived from `secret`, as README documents it."""
    key = hashlib.sha512(f"{secret}\n".encode()).hexdigest()
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def test_key_rotation_under_load_rejects_no_valid_token(stack):
    """The acceptance test of key rotation in compose: a client creates and
    verifies tokens continuously while scripts/rotate-key.sh opens the window
    (KEY=new, KEY_PREVIOUS=old) and closes it (KEY=new); no valid token may be
    rejected, and afterwards a token of the retired key must be.

    The documented wait between open and close is one token lifetime; here
    it is a few seconds, because the load verifies each token right after
    creating it. The token made before the rotation stands for the tokens
    still in circulation: accepted inside the window, rejected after it."""
    new_key = "e2e-rotated-signing-secret"
    old_token = create_token("before-rotation")
    assert token_kid(old_token) == sha256_kid(KEY)
    try:
        with TokenLoad([CREATOR], [VERIFIER]) as load:
            time.sleep(2)
            rotate("open", new_key, previous=KEY)
            time.sleep(3)
            status, _, body = http("POST", f"{VERIFIER}/verifier", {"token": old_token})
            assert (status, body) == (200, "before-rotation"), "old token refused inside the window"
            rotate("close", new_key)
            time.sleep(2)
        print(load.summary())
        assert not load.rejected and not load.errors, load.summary()
        # The rotation happened under load: tokens of both keys were verified.
        assert load.kids[sha256_kid(KEY)] > 0 and load.kids[sha256_kid(new_key)] > 0, load.summary()
        assert set(load.kids) == {sha256_kid(KEY), sha256_kid(new_key)}, load.summary()

        status, ctype, body = http("POST", f"{VERIFIER}/verifier", {"token": old_token})
        assert status == 401, (status, body)
        assert ctype.startswith("application/json") and "unknown key id" in body, body
        assert token_kid(create_token()) == sha256_kid(new_key)
    finally:
        # The other tests expect the stack's own KEY (and no previous key).
        rotate("close", KEY)
    assert token_kid(create_token()) == sha256_kid(KEY)


def network_gateway() -> str:
    """The host's address on the stack's network, which its containers reach."""
    network = f"{PROJECT}_default"
    return inspect_network(network)["IPAM"]["Config"][0]["Gateway"]


def inspect_network(name: str) -> dict:
    return json.loads(run(["docker", "network", "inspect", name]).stdout)[0]


def traced_call(method: str, url: str, body: dict, traceparent: str):
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", "traceparent": traceparent})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read().decode()


def test_tracing_reaches_a_collector_with_the_callers_trace(stack, monkeypatch):
    """compose.otel.yaml over the running stack: both services export to a
    collector (the tests' OTLP receiver, on the host's address on the
    compose network, standing in for the collector service, whose image
    cannot be pulled here), continuing the caller's trace."""
    sys.path.insert(0, str(ROOT / "tests" / "runner"))
    from otlp_receiver import Receiver

    receiver = Receiver(host=network_gateway())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    OVERRIDE_FILES.append(str(ROOT / "compose.otel.yaml"))
    try:
        compose("up", "-d", "--no-build", timeout=120)
        wait_healthy(time.monotonic() + HEALTH_TIMEOUT)
        trace_id = os.urandom(16).hex()
        caller = f"00-{trace_id}-{os.urandom(8).hex()}-01"
        status, token = traced_call("POST", f"{CREATOR}/create",
                                    {"username": "traced", "password": "pass"}, caller)
        assert status == 200
        status, user = traced_call("POST", f"{VERIFIER}/verifier", {"token": token.strip()}, caller)
        assert (status, user.strip()) == (200, "traced")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ours = {resource["service.name"]: span for resource, _, span in receiver.spans()
                    if span.trace_id.hex() == trace_id}
            if len(ours) == 2:
                break
            time.sleep(0.1)
        assert set(ours) == {"creator", "verifier"}, ours
        assert ours["creator"].name == "POST /create"
        assert ours["verifier"].name == "POST /verifier"
        assert all(span.parent_span_id.hex() == caller.split("-")[2] for span in ours.values())
        resources = {resource["service.name"]: resource for resource, _, _ in receiver.spans()}
        assert resources["creator"]["deployment.environment.name"] == "compose"
    finally:
        OVERRIDE_FILES.remove(str(ROOT / "compose.otel.yaml"))
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        # Back to the stack without tracing, for the tests after this one.
        compose("up", "-d", "--no-build", timeout=120)
        wait_healthy(time.monotonic() + HEALTH_TIMEOUT)
        receiver.close()


def test_zz_compose_down_is_fast(stack):
    """Runs last: the services exit on SIGTERM, well inside their 5 s grace period."""
    ids = {service: container_id(service) for service in SERVICES}
    start = time.monotonic()
    compose("stop", timeout=60)
    stopped = time.monotonic() - start
    for service, cid in ids.items():
        state = inspect(cid)["State"]
        assert state["ExitCode"] != 137, f"{service} was SIGKILLed: it ignored SIGTERM"
    compose("down", "-v", timeout=60)
    elapsed = time.monotonic() - start
    print(f"compose stop: {stopped:.1f}s, stop + down -v: {elapsed:.1f}s")
    assert stopped < 5, f"compose stop took {stopped:.1f}s"
    assert elapsed < 10, f"compose stop + down took {elapsed:.1f}s"
