"""The arm64 images, cross-built on this machine and run under emulation.

Builds the three images for linux/arm64 (`scripts/build-images.sh --platform
linux/arm64`: the Rust build runs natively and cross-compiles), then

- checks that every binary inside is a static-PIE aarch64 ELF and the image config
  says arm64;
- copies the runner, the precompiled components and keycreator out of the images
  and runs the runner's own contract and PyJWT interop tests
  (components/runner/tests/{contract,interop}.rs) against them on an emulated
  Cortex-A72, the plain ARMv8.0-A baseline the arm64 `.cwasm` targets;
- runs compose.yaml with the arm64 images (DOCKER_DEFAULT_PLATFORM) for the
  reference flow and the hardening.

arm64 code runs through qemu-user with binfmt_misc (the F flag makes static
aarch64 binaries run directly, also inside FROM scratch containers); the set-up
installs and registers it when missing, which needs root. Emulated timings
mean nothing: nothing here measures speed.

A local image store holds one platform per tag, so the module ends by building
the images for this machine again (a cache hit): the other container tests, and
anyone else, find the host's images under the usual names.

    python3 -m pytest -v tests/e2e/test_arm64.py
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import test_compose as e2e

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from helpers import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = "linux/arm64"
IMAGES = e2e.IMAGES
SERVICES = e2e.SERVICES
BINFMT = Path("/proc/sys/fs/binfmt_misc")
# What the arm64 .cwasm must run on: Raspberry Pi 4's core, ARMv8.0-A with no
# optional features (no LSE atomics, FP16, dot product, pointer authentication).
# qemu-user reads the CPU model from QEMU_CPU, and the runner sees only that
# model's features (HWCAP), as on the real chip.
BASELINE_CPU = "cortex-a72"
ELF_MACHINE_AARCH64 = 0xB7
# The benchmark key of the runner's tests (components/runner/tests/common).
TEST_SECRET = "benchmark-secret"
# qemu-user's cost, not the runner's: it keeps bookkeeping for every page of
# guest address space, and the pooling allocator reserves address space for
# twice RUNNER_MAX_CONCURRENT_REQUESTS (default 128) instance memories, so an
# emulated runner at the default has an RSS of about 6.4 GB (seen here, QEMU
# 7.2), and at 2 about 150 MB; natively it stays well under compose's 128m.
# Emulated runners here take a smaller pool, and compose's memory limit is
# raised for them (EMULATION_OVERRIDE); every other setting is compose.yaml's.
EMULATED_MAX_CONCURRENT = "4"
EMULATED_MEM_LIMIT = "1g"
EMULATION_OVERRIDE = f"""\
services:
  creator:
    mem_limit: {EMULATED_MEM_LIMIT}
    memswap_limit: {EMULATED_MEM_LIMIT}
    environment:
      RUNNER_MAX_CONCURRENT_REQUESTS: "{EMULATED_MAX_CONCURRENT}"
  verifier:
    mem_limit: {EMULATED_MEM_LIMIT}
    memswap_limit: {EMULATED_MEM_LIMIT}
    environment:
      RUNNER_MAX_CONCURRENT_REQUESTS: "{EMULATED_MAX_CONCURRENT}"
"""

run = e2e.run


# --- set-up -----------------------------------------------------------------------


def ensure_arm64_emulation() -> None:
    """qemu-user-static + binfmt_misc, registered for aarch64 with the F flag."""
    if os.geteuid() != 0:
        pytest.fail("the arm64 tests need root to install and register qemu-user-static")
    if not (shutil.which("qemu-aarch64-static") and shutil.which("update-binfmts")):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-qq"], env=env, timeout=600)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
             "qemu-user-static", "binfmt-support"], env=env, timeout=900)
    if not (BINFMT / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    run(["update-binfmts", "--enable", "qemu-aarch64"], check=False)
    entry = BINFMT / "qemu-aarch64"
    assert entry.exists(), "qemu-aarch64 is not registered with binfmt_misc"
    text = entry.read_text()
    assert text.startswith("enabled"), text
    flags = re.search(r"^flags: (\S*)", text, re.M)
    assert flags and "F" in flags.group(1), f"binfmt entry lacks the F flag:\n{text}"


def build_images(*args: str) -> None:
    run(["scripts/build-images.sh", *args], timeout=e2e.BUILD_TIMEOUT, capture=False)


@pytest.fixture(scope="module")
def arm64_images():
    ensure = run(["scripts/ensure-docker.sh"], check=False)
    if ensure.returncode != 0:
        pytest.fail(f"Docker is not usable, so the arm64 tests cannot run:\n{ensure.stdout}")
    ensure_arm64_emulation()
    try:
        build_images("--platform", PLATFORM)
        yield IMAGES
    finally:
        # Put this machine's images back under the shared names.
        build_images()


def copy_out(image: str, path: str, dest: Path) -> Path:
    """A file from an image, without running it (no shell needed)."""
    cid = e2e.create_container(image)
    try:
        run(["docker", "cp", f"{cid}:{path}", str(dest)])
    finally:
        run(["docker", "rm", cid], check=False)
    return dest


@pytest.fixture(scope="module")
def arm64_files(arm64_images, tmp_path_factory) -> dict[str, Path]:
    """The images' files: keycreator, runner (from each service) and the .cwasm."""
    out = tmp_path_factory.mktemp("arm64")
    files = {"keycreator": copy_out(IMAGES["keycreator"], "/keycreator", out / "keycreator")}
    for name in SERVICES:
        files[f"{name}-runner"] = copy_out(IMAGES[name], "/runner", out / f"{name}-runner")
        files[f"{name}.cwasm"] = copy_out(IMAGES[name], f"/{name}.cwasm", out / f"{name}.cwasm")
    return files


def elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path.name} is not an ELF file"
    assert head[4] == 2 and head[5] == 1, f"{path.name} is not 64-bit little-endian"
    return int.from_bytes(head[18:20], "little")


PT_DYNAMIC, PT_INTERP = 2, 3
ET_EXEC, ET_DYN = 2, 3
DT_NEEDED, DT_FLAGS_1, DF_1_PIE = 1, 0x6FFFFFFB, 0x08000000


def program_headers(data: bytes) -> list[tuple[int, int, int]]:
    """(p_type, p_offset, p_filesz) of each program header of a 64-bit LE ELF file."""
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    headers = []
    for i in range(phnum):
        ph = data[phoff + i * phentsize:][:phentsize]
        headers.append((int.from_bytes(ph[0:4], "little"), int.from_bytes(ph[8:16], "little"),
                        int.from_bytes(ph[32:40], "little")))
    return headers


def has_interpreter(path: Path) -> bool:
    """Whether the ELF file asks for a dynamic loader (PT_INTERP)."""
    return any(p_type == PT_INTERP for p_type, _, _ in program_headers(path.read_bytes()))


def static_pie_problems(path: Path) -> list[str]:
    """Why the ELF program is not a static PIE, the kernel loading it at a
    random address with no loader and no shared library (empty: it is one).
    What `readelf -h` calls Type DYN, `readelf -l` shows no INTERP for, and
    `readelf -d` lists no NEEDED in and FLAGS_1 PIE."""
    data = path.read_bytes()
    problems = []
    e_type = int.from_bytes(data[16:18], "little")
    if e_type != ET_DYN:
        problems.append(f"e_type {e_type} ({'EXEC, fixed address' if e_type == ET_EXEC else '?'}), not DYN")
    headers = program_headers(data)
    if any(p_type == PT_INTERP for p_type, _, _ in headers):
        problems.append("has PT_INTERP (a dynamic loader)")
    tags = []
    for p_type, offset, size in headers:
        if p_type == PT_DYNAMIC:
            entries = data[offset:offset + size]
            tags += [(int.from_bytes(entries[i:i + 8], "little"), int.from_bytes(entries[i + 8:i + 16], "little"))
                     for i in range(0, len(entries) - 15, 16)]
    if any(tag == DT_NEEDED for tag, _ in tags):
        problems.append("NEEDs shared libraries")
    if not any(tag == DT_FLAGS_1 and value & DF_1_PIE for tag, value in tags):
        problems.append("no FLAGS_1 PIE")
    return problems


# --- the images ---------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
def test_image_config_says_arm64(arm64_images, name):
    info = e2e.inspect(IMAGES[name])
    assert (info["Os"], info["Architecture"]) == ("linux", "arm64"), (info["Os"], info["Architecture"])


def test_every_binary_is_a_static_pie_aarch64_elf(arm64_files):
    """Static, and position-independent like the amd64 ones (docker/Dockerfile:
    Zig links aarch64 musl programs with -static -pie only when asked)."""
    for name, path in arm64_files.items():
        assert elf_machine(path) == ELF_MACHINE_AARCH64, f"{name}: e_machine {elf_machine(path):#x}"
        if not name.endswith(".cwasm"):  # .cwasm are ELF objects of aarch64 code, not programs
            assert not has_interpreter(path), f"{name} is dynamically linked"
            assert static_pie_problems(path) == [], f"{name} is not a static PIE"
    assert arm64_files["creator-runner"].read_bytes() == arm64_files["verifier-runner"].read_bytes()


def test_keycreator_writes_the_reference_key(arm64_files, tmp_path):
    key_file = tmp_path / "key.txt"
    env = dict(os.environ, KEY=TEST_SECRET, KEY_FILE=str(key_file))
    run([str(arm64_files["keycreator"])], env=env)
    # The hex SHA-512 of the secret plus a newline (`echo $KEY | sha512sum`), with
    # no newline in the file (components/keycreator).
    expected = hashlib.sha512(f"{TEST_SECRET}\n".encode()).hexdigest()
    assert key_file.read_text() == expected


# --- the runner and components on an ARMv8.0-A CPU ----------------------------------


@pytest.fixture(scope="module")
def key_file(arm64_files, tmp_path_factory) -> Path:
    """The key file as the arm64 keycreator writes it."""
    path = tmp_path_factory.mktemp("key") / "key.txt"
    env = dict(os.environ, KEY=TEST_SECRET, KEY_FILE=str(path))
    run([str(arm64_files["keycreator"])], env=env)
    return path


def test_reference_flow_on_a_cortex_a72(arm64_files, key_file, tmp_path):
    env = dict(os.environ, QEMU_CPU=BASELINE_CPU, RUNNER_MAX_CONCURRENT_REQUESTS=EMULATED_MAX_CONCURRENT)
    procs = {}
    try:
        for name in SERVICES:
            port = free_port()
            procs[name] = (port, subprocess.Popen(
                [str(arm64_files[f"{name}-runner"]), "--addr", f"127.0.0.1:{port}",
                 "--dir", f"{key_file.parent}::/usr/share/key", str(arm64_files[f"{name}.cwasm"])],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        for name, (port, proc) in procs.items():
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, f"{name} runner exited: {proc.stderr.read()}"
                try:
                    if e2e.http("GET", f"http://127.0.0.1:{port}/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"{name} runner not ready within 60s"
                time.sleep(0.5)
        creator, verifier = (f"http://127.0.0.1:{procs[name][0]}" for name in SERVICES)
        status, _, token = e2e.http("POST", f"{creator}/create", {"username": "testname", "password": "pass"})
        assert status == 200, (status, token)
        status, _, body = e2e.http("POST", f"{verifier}/verifier", {"token": token.strip()})
        assert (status, body.strip()) == (200, "testname")
    finally:
        for _, proc in procs.values():
            proc.kill()
            proc.wait()


def test_runner_contract_and_pyjwt_interop_on_a_cortex_a72(arm64_files, key_file, tmp_path):
    """The runner's own contract and interop tests, served by the arm64 build.

    Only the test that JIT-compiles a `.wasm` is left out: the images' runner
    has no compiler and serves precompiled components only.
    """
    cwasm_dir = tmp_path / "cwasm"
    cwasm_dir.mkdir()
    for name in SERVICES:
        shutil.copy(arm64_files[f"{name}.cwasm"], cwasm_dir)
    env = dict(os.environ, QEMU_CPU=BASELINE_CPU, RUNNER_MAX_CONCURRENT_REQUESTS=EMULATED_MAX_CONCURRENT,
               TEST_RUNNER=str(arm64_files["creator-runner"]),
               TEST_CWASM_DIR=str(cwasm_dir), TEST_KEY_FILE=str(key_file))
    # --workspace: the feature set of scripts/test.sh's `cargo test`, so these are cache hits.
    proc = run(["cargo", "test", "--locked", "--workspace", "--test", "contract", "--test", "interop",
                # One test at a time: several emulated runners starting at once on a
                # busy machine miss the tests' 60 s start-up and request deadlines.
                "--", "--test-threads=1", "--skip", "a_jit_compiled_wasm_serves_like_the_precompiled_cwasm"],
               env=env, timeout=1800, check=False)
    passed = [int(n) for n in re.findall(r"test result: ok\. (\d+) passed", proc.stdout)]
    assert proc.returncode == 0, proc.stdout[-8000:]
    assert len(passed) == 2 and all(passed), proc.stdout[-3000:]
    print(f"arm64 runner on {BASELINE_CPU}: {sum(passed)} contract and interop tests passed")


# --- compose.yaml with the arm64 images ----------------------------------------------


@pytest.fixture(scope="module")
def arm64_stack(arm64_images, tmp_path_factory):
    saved = os.environ.get("DOCKER_DEFAULT_PLATFORM")
    os.environ["DOCKER_DEFAULT_PLATFORM"] = PLATFORM
    override = tmp_path_factory.mktemp("compose") / "emulation.yaml"
    override.write_text(EMULATION_OVERRIDE)
    e2e.OVERRIDE_FILES.append(str(override))
    try:
        with e2e.running_stack(up_timeout=180, health_timeout=3 * e2e.HEALTH_TIMEOUT):
            yield
    finally:
        e2e.OVERRIDE_FILES.remove(str(override))
        if saved is None:
            os.environ.pop("DOCKER_DEFAULT_PLATFORM", None)
        else:
            os.environ["DOCKER_DEFAULT_PLATFORM"] = saved


def test_compose_reference_flow(arm64_stack):
    for service in SERVICES:
        image = e2e.inspect(e2e.inspect(e2e.container_id(service))["Image"])
        assert image["Architecture"] == "arm64", (service, image["Architecture"])
    token = e2e.create_token("testname", "pass")
    status, _, body = e2e.http("POST", f"{e2e.VERIFIER}/verifier", {"token": token})
    assert (status, body.strip()) == (200, "testname")


def test_compose_keycreator_wrote_the_key(arm64_stack):
    state = e2e.inspect(e2e.container_id("keycreator"))["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 0), state


# The amd64 checks, run as they are: their `stack` argument is only their fixture.


def test_compose_no_container_runs_as_root(arm64_stack):
    e2e.test_no_container_runs_as_root(arm64_stack)


def test_compose_services_are_hardened(arm64_stack):
    e2e.test_services_are_hardened(arm64_stack)


@pytest.mark.parametrize("name", IMAGES)
def test_image_has_no_shell(arm64_images, name):
    e2e.test_image_has_no_shell(arm64_images, name)
