"""End-to-end: the pods of k8s/ run with `podman kube play`, then the token flow.

Needs root (podman rootful, apt), docker (scripts/build-images.sh builds the
images there) and podman 4.3+ with catatonit; installs the latter if missing.
Nothing is skipped: if podman cannot run here, the tests fail and say why.

Environment:
  WASM_JWT_IMAGES_BUILT=1     the images are already built in docker (e.g. by
                              the test script): do not run build-images.sh.
  WASM_JWT_BUILD_TIMEOUT=S    bound for build-images.sh (default 3000 s).

See podman_kube.py for how the copy of the manifests is adapted for podman.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import time

import pytest

from k8s_helpers import (
    EXPECTED_APPS,
    KEY_DIR,
    REPO_ROOT,
    RUNTIME_UID,
    SECRET_KEY,
    all_containers,
    load_docs,
    pod_spec,
)
import podman_kube
from podman_kube import PodmanCopy, PodUnderTest

READY_TIMEOUT_S = 90
USERNAME, PASSWORD = "testname", "pass"

pytestmark = pytest.mark.podman


# --------------------------------------------------------------------------
# HTTP (stdlib only; 127.0.0.1 only)
# --------------------------------------------------------------------------


def request(port: int, method: str, path: str, body: dict | None = None,
            timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


def app_images(docs) -> list[str]:
    return sorted({
        c["image"]
        for d in docs if d.kind == "Deployment"
        for c in all_containers(pod_spec(d.body))
    })


@pytest.fixture(scope="module")
def podman_version() -> str:
    try:
        return podman_kube.ensure_podman()
    except Exception as e:  # noqa: BLE001 - turned into a clear test failure
        pytest.fail(f"podman is required for this test and cannot run here:\n{e}", pytrace=False)


@pytest.fixture(scope="module")
def images(podman_version) -> dict[str, str]:
    """Build the images (docker), load them into podman; {image: image ID}."""
    docs = load_docs()
    images = app_images(docs)
    if os.environ.get("WASM_JWT_IMAGES_BUILT") != "1":
        script = REPO_ROOT / "scripts" / "build-images.sh"
        if not script.exists():
            pytest.fail(f"{script.relative_to(REPO_ROOT)} is missing: cannot build the images",
                        pytrace=False)
        timeout = float(os.environ.get("WASM_JWT_BUILD_TIMEOUT", "3000"))
        proc = podman_kube.run([str(script)], timeout=timeout, check=False)
        if proc.returncode != 0:
            pytest.fail(f"scripts/build-images.sh failed ({proc.returncode}):\n"
                        f"{proc.stderr.decode(errors='replace')[-4000:]}", pytrace=False)
    try:
        return podman_kube.load_images_from_docker(images)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def deployed(images, tmp_path_factory) -> PodmanCopy:
    docs = load_docs()
    podman_kube.remove_leftovers()
    copy = podman_kube.make_podman_copy(
        docs, EXPECTED_APPS, tmp_path_factory.mktemp("podman-kube"), secrets.token_hex(4))
    try:
        play_until_ready(copy)
        yield copy
    finally:
        errors = podman_kube.down(copy)
        assert not errors, "teardown failed:\n" + "\n".join(errors)


def play_until_ready(copy: PodmanCopy) -> None:
    """`podman kube play` the copy (a failure says what podman saw), then wait
    until every pod is ready."""
    try:
        podman_kube.play(copy)
    except RuntimeError as e:
        pytest.fail(f"podman kube play failed:\n{e}\n{podman_kube.diagnostics(copy)}",
                    pytrace=False)
    wait_until_ready(copy)


def wait_until_ready(copy: PodmanCopy) -> None:
    """Poll each pod's readiness endpoint (from its readinessProbe) until 200."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    for pod in copy.pods.values():
        path = pod.probes["readinessProbe"]["httpGet"]["path"]
        last = "no answer"
        while True:
            try:
                status, _, body = request(pod.host_port, "GET", path, timeout=2)
                if status == 200:
                    break
                last = f"HTTP {status} {body[:200]!r}"
            except OSError as e:
                last = repr(e)
            state = podman_kube.inspect_container(pod.app_container)["State"]
            if state["Status"] == "exited" and state.get("ExitCode", 0) != 0:
                pytest.fail(f"{pod.app_container} exited with {state['ExitCode']}\n"
                            f"{podman_kube.diagnostics(copy)}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{pod.app} not ready within {READY_TIMEOUT_S}s "
                            f"(GET {path}: {last})\n{podman_kube.diagnostics(copy)}",
                            pytrace=False)
            time.sleep(0.5)


@pytest.fixture(scope="module")
def creator(deployed) -> PodUnderTest:
    return deployed.pods["creator"]


@pytest.fixture(scope="module")
def verifier(deployed) -> PodUnderTest:
    return deployed.pods["verifier"]


@pytest.fixture(scope="module")
def token(creator) -> str:
    status, headers, body = request(
        creator.host_port, "POST", "/create", {"username": USERNAME, "password": PASSWORD})
    assert status == 200, f"POST /create: HTTP {status} {body[:300]!r}"
    assert headers.get("content-type", "").startswith("text/plain"), headers
    return body.decode().strip()


# --------------------------------------------------------------------------
# tests (module order matters only for the last one, which stops the pods)
# --------------------------------------------------------------------------


def test_podman_is_recent_enough(podman_version):
    major, minor = (int(x) for x in podman_version.split(".")[:2])
    assert (major, minor) >= (4, 3), f"podman {podman_version} is too old for kube play"


@pytest.mark.parametrize("app", sorted(EXPECTED_APPS))
def test_probe_endpoints_answer_on_the_probed_port(deployed, app):
    pod = deployed.pods[app]
    assert set(pod.probes) == {"startupProbe", "livenessProbe", "readinessProbe"}
    for name, probe in pod.probes.items():
        get = probe["httpGet"]
        # The named probe port resolves to the container port podman published.
        ports = {p.get("name"): p["containerPort"]
                 for c in pod_spec(pod.original)["containers"] for p in c.get("ports", [])}
        assert ports.get(get["port"], get["port"]) == pod.container_port
        status, _, body = request(pod.host_port, "GET", get["path"])
        assert status == 200, f"{app} {name} GET {get['path']}: HTTP {status} {body[:200]!r}"


def test_token_flow(token, verifier):
    parts = token.split(".")
    assert len(parts) == 3 and all(parts[:2]), f"not a JWS compact token: {token!r}"
    header = json.loads(b64url_decode(parts[0]))
    assert header.get("alg") and header["alg"].lower() != "none", header
    status, _, body = request(verifier.host_port, "POST", "/verifier", {"token": token})
    assert (status, body.decode().strip()) == (200, USERNAME)


def tampered_tokens(token: str) -> dict[str, str]:
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    forged_claims = b64url(json.dumps({**claims, "forged": True}).encode())
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    none_header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return {
        "signature-flipped": f"{header}.{payload}.{flipped}",
        "payload-changed": f"{header}.{forged_claims}.{signature}",
        "alg-none": f"{none_header}.{payload}.",
        "signature-stripped": f"{header}.{payload}.",
    }


@pytest.mark.parametrize("kind", ["signature-flipped", "payload-changed", "alg-none",
                                  "signature-stripped"])
def test_tampered_token_is_rejected(token, verifier, kind):
    bad = tampered_tokens(token)[kind]
    status, _, body = request(verifier.host_port, "POST", "/verifier", {"token": bad})
    assert status == 401, f"{kind}: HTTP {status} {body[:200]!r}"
    assert USERNAME not in body.decode(errors="replace")


def manifest_app_container(pod: PodUnderTest) -> dict:
    """The app container as written in k8s/ (not the podman copy)."""
    return next(c for c in pod_spec(pod.original)["containers"]
                if f"{pod.pod}-{c['name']}" == pod.app_container)


def process_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.mark.parametrize("app", sorted(EXPECTED_APPS))
def test_app_container_runs_as_specified(deployed, images, app):
    """What podman actually ran matches the manifest: user, read-only root,
    no capabilities, no new privileges, the key mounted read-only, no KEY in
    the environment, and the memory/CPU limits in force."""
    pod = deployed.pods[app]
    info = podman_kube.inspect_container(pod.app_container)
    assert info["State"]["Status"] == "running"
    image = manifest_app_container(pod)["image"]
    assert info["Image"] == images[image], f"{app} does not run the image docker built"
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    # The process itself, as the kernel sees it.
    status = process_status(info["State"]["Pid"])
    assert status["Uid"].split() == [str(RUNTIME_UID)] * 4, status["Uid"]
    assert status["Gid"].split() == [str(RUNTIME_UID)] * 4, status["Gid"]
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, "capabilities left"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2", "no seccomp filter"
    env_names = {e.split("=", 1)[0] for e in info["Config"]["Env"] or []}
    assert SECRET_KEY not in env_names, "the app container must not see KEY"
    mounts = [m for m in info["Mounts"] if m["Destination"] == KEY_DIR]
    assert len(mounts) == 1 and mounts[0]["RW"] is False, mounts
    limits = manifest_app_container(pod)["resources"]["limits"]
    assert limits["memory"].endswith("Mi") and limits["cpu"].endswith("m")
    assert host["Memory"] == int(limits["memory"][:-2]) * 2**20, "memory limit not applied"
    assert host["NanoCpus"] == int(limits["cpu"][:-1]) * 10**6, "CPU limit not applied"


def test_sigterm_exits_zero_within_grace_period(deployed):
    """Runs last: stop each app container like the kubelet would (SIGTERM, then
    SIGKILL when the grace period left after the preStop sleep runs out) and
    check a clean, timely exit."""
    for pod in deployed.pods.values():
        grace = pod_spec(pod.original)["terminationGracePeriodSeconds"]
        lifecycle = manifest_app_container(pod).get("lifecycle") or {}
        pre_stop = ((lifecycle.get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
        started = time.monotonic()
        podman_kube.run(["podman", "stop", "--time", str(grace - pre_stop), pod.app_container],
                        timeout=grace + 30)
        elapsed = time.monotonic() - started
        state = podman_kube.inspect_container(pod.app_container)["State"]
        assert state["ExitCode"] == 0, f"{pod.app}: exit code {state['ExitCode']} after SIGTERM"
        assert elapsed < grace - pre_stop, f"{pod.app}: took {elapsed:.1f}s to stop"
