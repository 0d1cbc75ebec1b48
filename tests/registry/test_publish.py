"""scripts/publish.sh against a real registry, and everything a cluster does
with what it published.

A CNCF Distribution registry (Debian's `docker-registry`) runs on 127.0.0.1
with TLS from a test CA and htpasswd authentication (registry_server.py). The
tests log in as a user would (`podman login`, `docker login`, into throwaway
auth files), publish with `scripts/publish.sh HOST/team --tag TAG
--kustomize DIR`, and then check, from the registry's side and from pulls:

- each image's tag is one OCI image index with exactly a linux/amd64 and a
  linux/arm64 entry, whose configs name that architecture, and whose digest
  is the one publish.sh printed; the platform manifests were pushed before
  the index (the registry's access log);
- the images pulled per platform (`skopeo copy --override-arch`) hold
  static-PIE binaries of that architecture; the dependency lists cargo-auditable wrote
  into them, read back with rust-audit-info, and the SBOMs they carry name
  exactly the crates Cargo.lock says each binary uses;
- compose, with IMAGE_PREFIX / IMAGE_TAG, pulls the stack from the registry
  for arm64 (run under qemu-user, as tests/e2e/test_arm64.py does) and for
  amd64, and the reference flow works on both;
- the kustomize overlay publish.sh wrote renders manifests whose images all
  point at the registry by digest, valid for the Kubernetes versions we
  support, and its pods run with `podman kube play`, pulling from the registry;
- bad input (a login the registry refuses, an unreachable registry, a missing
  --tag value, malformed references) gives one line and a non-zero exit, and
  leaves nothing behind the tag.

Needs root (apt, the registry's CA in /etc/containers/certs.d and
/etc/docker/certs.d for its port, binfmt_misc), Docker, podman, skopeo,
docker-registry and qemu-user-static; installs what is missing.

    python3 -m pytest -v tests/registry
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
for sub in ("e2e", "k8s"):
    if str(ROOT / "tests" / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / "tests" / sub))

import podman_kube  # noqa: E402
import registry_server  # noqa: E402
import test_arm64 as arm64  # noqa: E402
import test_compose as e2e  # noqa: E402
import test_k8s_podman_e2e as pods  # noqa: E402
import test_k8s_schema as schema  # noqa: E402
from k8s_helpers import EXPECTED_APPS, Doc, all_containers, pod_spec  # noqa: E402

NAMES = ("keycreator", "creator", "verifier")
NAMESPACE = "team"
TAG = "0.1.0-e2e"  # not the local tag: the remote tag is publish.sh's --tag
ELF_MACHINES = {"amd64": 0x3E, "arm64": 0xB7}
RUST_TRIPLES = {"amd64": "x86_64-unknown-linux-musl", "arm64": "aarch64-unknown-linux-musl"}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PUBLISH = str(ROOT / "scripts" / "publish.sh")
# What each image ships, by path inside it: the runner and keycreator carry
# their dependency list (cargo auditable); the precompiled components do not
# (measured: wasmtime keeps no custom section of the .wasm in a .cwasm), so
# each image has an SBOM per shipped program.
BINARIES = {"keycreator": ["keycreator"], "creator": ["runner"], "verifier": ["runner"]}
SBOMS = {
    "keycreator": {"sbom/keycreator.cdx.json.gz": ("keycreator", None)},
    "creator": {"sbom/runner.cdx.json.gz": ("runner", None),
                "sbom/creator.cdx.json.gz": ("creator", "wasm32-wasip2")},
    "verifier": {"sbom/runner.cdx.json.gz": ("runner", None),
                 "sbom/verifier.cdx.json.gz": ("verifier", "wasm32-wasip2")},
}

run = e2e.run


# --- set-up -----------------------------------------------------------------------


def apt_install(*packages: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env, timeout=600)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env, timeout=900)


@pytest.fixture(scope="module")
def tools() -> None:
    if os.geteuid() != 0:
        pytest.fail("the registry tests need root: apt, the test CA in /etc/containers/certs.d, binfmt_misc")
    ensure = run(["scripts/ensure-docker.sh"], check=False)
    if ensure.returncode != 0:
        pytest.fail(f"Docker is not usable, so the registry tests cannot run:\n{ensure.stdout}")
    podman_kube.ensure_podman()
    missing = [pkg for pkg, binary in (("skopeo", "skopeo"), ("docker-registry", "docker-registry"))
               if not shutil.which(binary)]
    if missing:
        apt_install(*missing)
    arm64.ensure_arm64_emulation()
    if not shutil.which("rust-audit-info"):
        # The independent reader of cargo-auditable's data (no network needed to read).
        run(["cargo", "install", "--locked", "rust-audit-info@0.5.4"], timeout=900)


@pytest.fixture(scope="module")
def registry(tools, tmp_path_factory):
    server = registry_server.start(tmp_path_factory.mktemp("registry"), secrets.token_urlsafe(12))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client_env(registry, tmp_path_factory) -> dict[str, str]:
    """The environment of a user logged in to the registry (podman and docker)."""
    return registry.login(tmp_path_factory.mktemp("auth"))


def skopeo(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["skopeo", *args], env=env, capture_output=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc


def publish(*args: str, env: dict[str, str], timeout: float = 120, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([PUBLISH, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def tag_exists(registry, env, repository: str, tag: str) -> bool:
    proc = skopeo("inspect", "--raw", f"docker://{registry.host}/{repository}:{tag}", env=env, check=False)
    if proc.returncode == 0:
        return True
    assert b"manifest unknown" in proc.stderr, proc.stderr.decode(errors="replace")
    return False


# --- bad input: before anything is built or pushed ---------------------------------------


@pytest.mark.parametrize("reference", [
    "https://127.0.0.1:5000/team",       # a URL, not a reference
    "127.0.0.1:5000/Team",               # repository names are lowercase
    "team",                               # no registry host: would mean Docker Hub
    "127.0.0.1:5000/team:0.1.0",         # the tag goes in --tag
    "127.0.0.1:5000/team@sha256:" + "0" * 64,
    "127.0.0.1:5000//team",
    "127.0.0.1:5000/team/",
    "registry example.com/team",
])
def test_malformed_reference_is_one_line_and_exit_2(tmp_path, reference):
    proc = publish(reference, env=dict(os.environ), timeout=30)
    assert proc.returncode == 2, proc
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("publish.sh: error: "), lines
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [["--tag"], ["--tag", ""], ["--tag", "--kustomize", "x"],
                                  ["--kustomize"], ["--tag", "-bad"], ["--tag", "a" * 129],
                                  ["--platform", "linux/amd64"], []])
def test_bad_arguments_are_one_line_and_exit_2(args):
    reference = [] if args == [] else ["127.0.0.1:5000/team"]
    proc = publish(*reference, *args, env=dict(os.environ), timeout=30)
    assert proc.returncode == 2, proc
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("publish.sh: error: "), lines


def test_refused_login_is_one_line_and_pushes_nothing(registry, client_env, tmp_path):
    """The user's stored login is wrong: the registry refuses it before any
    build, and no tag appears."""
    auth = tmp_path / "auth.json"
    wrong = base64.b64encode(f"{registry.user}:not-the-password".encode()).decode()
    auth.write_text(json.dumps({"auths": {registry.host: {"auth": wrong}}}))
    env = dict(os.environ, REGISTRY_AUTH_FILE=str(auth), DOCKER_CONFIG=str(tmp_path / "docker"))
    proc = publish(f"{registry.host}/{NAMESPACE}", "--tag", "refused", env=env)
    assert proc.returncode == 1, proc
    # One line in all: nothing was built (build-images.sh logs every step).
    lines = error_lines(proc)
    assert len(lines) == 1 and "refused the login" in lines[0], lines
    assert registry.password not in proc.stderr + proc.stdout
    for name in NAMES:
        assert not tag_exists(registry, client_env, f"{NAMESPACE}/{name}", "refused")


def test_unreachable_registry_is_one_line(client_env):
    closed = registry_server.free_port()
    proc = publish(f"127.0.0.1:{closed}/{NAMESPACE}", "--tag", "x", env=client_env)
    assert proc.returncode == 1, proc
    lines = error_lines(proc)
    assert len(lines) == 1 and f"cannot reach the registry 127.0.0.1:{closed}" in lines[0], lines


def test_untrusted_certificate_is_one_line(registry, client_env):
    """The same registry under a name its certificate and CA directory do not
    cover: TLS verification fails, and the line says where the CA goes."""
    port = registry.host.split(":")[1]
    proc = publish(f"localhost:{port}/{NAMESPACE}", "--tag", "x", env=client_env)
    assert proc.returncode == 1, proc
    lines = error_lines(proc)
    assert len(lines) == 1 and "certs.d" in lines[0], lines


# --- publishing --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def published(registry, client_env, tmp_path_factory) -> dict:
    # Run from elsewhere, with a relative --kustomize DIR: relative to where the user is.
    workdir = tmp_path_factory.mktemp("overlay")
    overlay = workdir / "deploy" / "registry"
    proc = publish(f"{registry.host}/{NAMESPACE}", "--tag", TAG, "--kustomize", "deploy/registry",
                   env=client_env, timeout=e2e.BUILD_TIMEOUT, cwd=workdir)
    assert proc.returncode == 0, f"publish.sh failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    assert registry.password not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    pattern = re.compile(rf"{re.escape(registry.host)}/{NAMESPACE}/([a-z]+):{re.escape(TAG)}@(sha256:[0-9a-f]{{64}})")
    matches = [pattern.fullmatch(line) for line in lines]
    assert all(matches) and [m.group(1) for m in matches] == list(NAMES), lines
    return {"digests": {m.group(1): m.group(2) for m in matches}, "overlay": overlay,
            "prefix": f"{registry.host}/{NAMESPACE}"}


def ref(published: dict, name: str) -> str:
    return f"{published['prefix']}/{name}:{TAG}"


def raw(reference: str, env) -> bytes:
    return skopeo("inspect", "--raw", f"docker://{reference}", env=env).stdout


@pytest.mark.parametrize("name", NAMES)
def test_each_tag_is_one_oci_index_of_amd64_and_arm64(published, client_env, name):
    index_bytes = raw(ref(published, name), client_env)
    assert "sha256:" + hashlib.sha256(index_bytes).hexdigest() == published["digests"][name], \
        "the digest publish.sh printed is not the index the registry serves"
    index = json.loads(index_bytes)
    assert index["mediaType"] == OCI_INDEX, index.get("mediaType")
    platforms = sorted((m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"])
    assert platforms == [("linux", "amd64"), ("linux", "arm64")], platforms
    for entry in index["manifests"]:
        arch = entry["platform"]["architecture"]
        pinned = f"{published['prefix']}/{name}@{entry['digest']}"
        manifest_bytes = raw(pinned, client_env)
        assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == entry["digest"]
        assert entry["mediaType"] == json.loads(manifest_bytes)["mediaType"] == OCI_MANIFEST
        config = json.loads(skopeo("inspect", "--config", "--raw", f"docker://{pinned}", env=client_env).stdout)
        assert (config["os"], config["architecture"]) == ("linux", arch), (name, arch)
        assert config["config"]["User"] == "65532:65532"


def test_platform_images_are_pushed_before_each_index(published, registry):
    """From the registry's access log: for each repository, every manifest
    PUT by digest comes before the one PUT of the tag, so an interrupted
    publish leaves no index behind the tag."""
    puts = re.findall(r'"PUT /v2/([^ ]+)/manifests/([^ ]+) HTTP/[0-9.]+" 201', registry.log_text())
    for name in NAMES:
        refs = [reference for repository, reference in puts if repository == f"{NAMESPACE}/{name}"]
        assert refs.count(TAG) == 1, refs
        assert refs.index(TAG) == len(refs) - 1, f"{name}: the tag was not pushed last: {refs}"
        assert len(refs) >= 3 and all(r.startswith("sha256:") for r in refs[:-1]), refs


# --- what the pulled images hold ---------------------------------------------------------


def extract(image_dir: Path, rootfs: Path) -> dict:
    """Unpack a `skopeo copy ... dir:` image's layers; returns its config."""
    manifest = json.loads((image_dir / "manifest.json").read_text())
    rootfs.mkdir()
    for layer in manifest["layers"]:
        blob = image_dir / layer["digest"].split(":", 1)[1]
        with tarfile.open(blob, mode="r:*") as tar:
            for member in tar.getmembers():
                if member.isfile() and not Path(member.name).name.startswith(".wh."):
                    target = rootfs / member.name.lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(member).read())
    return json.loads((image_dir / manifest["config"]["digest"].split(":", 1)[1]).read_text())


@pytest.fixture(scope="module")
def pulled(published, client_env, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """{arch: {name: rootfs}}: each image pulled by tag for each platform."""
    out = tmp_path_factory.mktemp("pulled")
    result: dict[str, dict[str, Path]] = {}
    for arch in ELF_MACHINES:
        for name in NAMES:
            image_dir = out / f"{arch}-{name}"
            skopeo("copy", "--override-os", "linux", "--override-arch", arch,
                   f"docker://{ref(published, name)}", f"dir:{image_dir}", env=client_env)
            config = extract(image_dir, out / f"{arch}-{name}-rootfs")
            assert config["architecture"] == arch, (name, arch, config["architecture"])
            result.setdefault(arch, {})[name] = out / f"{arch}-{name}-rootfs"
    return result


@pytest.mark.parametrize("arch", ELF_MACHINES)
def test_pulled_binaries_are_of_their_platform(pulled, arch):
    for name, rootfs in pulled[arch].items():
        programs = BINARIES[name] + ([f"{name}.cwasm"] if name != "keycreator" else [])
        for program in programs:
            path = rootfs / program
            assert arm64.elf_machine(path) == ELF_MACHINES[arch], f"{arch} {name}: /{program}"
            if not program.endswith(".cwasm"):
                assert not arm64.has_interpreter(path), f"{arch} {name}: /{program} is not static"
                assert arm64.static_pie_problems(path) == [], f"{arch} {name}: /{program} is not a static PIE"


@pytest.fixture(scope="module")
def metadata_cache() -> dict:
    """`cargo metadata` per target, run once."""
    return {}


BUILD = (None, "build")  # what the binary's audit data lists: build-time crates too
RUNTIME = (None,)  # what an SBOM made with --no-build-deps lists


def lock_crates(package: str, target: str, cache: dict, kinds=BUILD) -> set[tuple[str, str]]:
    """(name, version) of every crate `package` uses on `target` by Cargo.lock:
    its dependencies of the given kinds, transitively, as `cargo metadata`
    resolves the workspace (the view cargo-auditable and cargo-cyclonedx take:
    a crate's features are the workspace's union, so a crate that a feature
    enabled elsewhere in the workspace pulls in is listed too)."""
    if target not in cache:
        proc = run(["cargo", "metadata", "--locked", "--format-version", "1", "--filter-platform", target,
                    "--no-default-features"], timeout=300)
        cache[target] = json.loads(proc.stdout)
    meta = cache[target]
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    (root,) = [i for i in nodes if packages[i]["name"] == package and packages[i]["source"] is None]
    seen, todo = set(), [root]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo += [dep["pkg"] for dep in nodes[node]["deps"]
                 if any(kind["kind"] in kinds for kind in dep["dep_kinds"])]
    return {(packages[i]["name"], packages[i]["version"]) for i in seen}


@pytest.mark.parametrize("arch", ELF_MACHINES)
def test_audit_data_in_the_binaries_matches_cargo_lock(pulled, metadata_cache, arch):
    for name, rootfs in pulled[arch].items():
        for program in BINARIES[name]:
            proc = run(["rust-audit-info", str(rootfs / program)])
            audit = json.loads(proc.stdout)
            crates = {(p["name"], p["version"]) for p in audit["packages"]}
            (root,) = [p["name"] for p in audit["packages"] if p.get("root")]
            assert root == program
            expected = lock_crates(program, RUST_TRIPLES[arch], metadata_cache)
            assert crates == expected, (f"{arch} {name}:/{program}: only in the binary "
                                        f"{sorted(crates - expected)}, only in Cargo.lock {sorted(expected - crates)}")


def test_cwasm_keeps_no_audit_data(pulled):
    """Why the components need an SBOM: the .cwasm holds none of the .wasm's
    custom sections, cargo-auditable's `.dep-v0` included."""
    for name in ("creator", "verifier"):
        data = (pulled["amd64"][name] / f"{name}.cwasm").read_bytes()
        assert b".dep-v0" not in data
        proc = run(["rust-audit-info", str(pulled["amd64"][name] / f"{name}.cwasm")], check=False)
        assert proc.returncode != 0, proc.stdout


def sbom_crates(document: dict) -> tuple[str, set[tuple[str, str]]]:
    assert document["bomFormat"] == "CycloneDX", document.get("bomFormat")
    top = document["metadata"]["component"]
    crates = {(c["name"], c["version"]) for c in document["components"]}
    for component in document["components"]:
        assert component["purl"].startswith(f"pkg:cargo/{component['name']}@{component['version']}")
    return top["name"], crates | {(top["name"], top["version"])}


@pytest.mark.parametrize("arch", ELF_MACHINES)
def test_sboms_parse_and_name_the_crates_of_what_each_image_ships(pulled, metadata_cache, arch):
    for name, rootfs in pulled[arch].items():
        shipped = {str(p.relative_to(rootfs)) for p in rootfs.rglob("*.cdx.json*")}
        assert shipped == set(SBOMS[name]), (name, shipped)
        for path, (package, target) in SBOMS[name].items():
            top, crates = sbom_crates(json.loads(gzip.decompress((rootfs / path).read_bytes())))
            assert top == package
            # Made with --no-build-deps: what ships is what runs.
            expected = lock_crates(package, target or RUST_TRIPLES[arch], metadata_cache, kinds=RUNTIME)
            assert crates == expected, (f"{arch} {name}:/{path}: only in the SBOM {sorted(crates - expected)}, "
                                        f"only in Cargo.lock {sorted(expected - crates)}")


# --- compose from the registry ----------------------------------------------------------


@pytest.mark.parametrize("arch", ["arm64", "amd64"])
def test_compose_pulls_from_the_registry_and_serves(published, client_env, tmp_path, monkeypatch, arch):
    """compose.yaml with IMAGE_PREFIX / IMAGE_TAG at the registry, for one
    platform: `compose pull`, then up and the reference flow."""
    monkeypatch.setenv("IMAGE_PREFIX", published["prefix"])
    monkeypatch.setenv("IMAGE_TAG", TAG)
    monkeypatch.setenv("DOCKER_DEFAULT_PLATFORM", f"linux/{arch}")
    monkeypatch.setenv("DOCKER_CONFIG", client_env["DOCKER_CONFIG"])
    if arch != "amd64":
        override = tmp_path / "emulation.yaml"
        override.write_text(arm64.EMULATION_OVERRIDE)
        monkeypatch.setattr(e2e, "OVERRIDE_FILES", [str(override)])
    for name in NAMES:  # pulled now, not left over from an earlier run
        run(["docker", "image", "rm", "--force", ref(published, name)], check=False)
    e2e.compose("pull", timeout=600)
    with e2e.running_stack(up_timeout=180, health_timeout=3 * e2e.HEALTH_TIMEOUT):
        for service in ("keycreator", *e2e.SERVICES):
            container = e2e.inspect(e2e.container_id(service))
            assert container["Config"]["Image"] == ref(published, service)
            assert e2e.inspect(container["Image"])["Architecture"] == arch, service
        token = e2e.create_token("testname", "pass")
        status, _, body = e2e.http("POST", f"{e2e.VERIFIER}/verifier", {"token": token})
        assert (status, body.strip()) == (200, "testname")


# --- Kubernetes from the registry --------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(published) -> list[Doc]:
    proc = run(["kubectl", "kustomize", str(published["overlay"])])
    return [Doc(published["overlay"] / "kustomization.yaml", i, body)
            for i, body in enumerate(b for b in yaml.safe_load_all(proc.stdout) if b)]


def test_overlay_points_every_image_at_the_registry_by_digest(published, rendered):
    images = {c["image"] for doc in rendered if doc.kind == "Deployment"
              for c in all_containers(pod_spec(doc.body))}
    assert images == {f"{published['prefix']}/{name}@{published['digests'][name]}" for name in NAMES}


@pytest.mark.parametrize("version", schema.VERSIONS)
def test_overlay_output_is_valid_strict(rendered, version):
    for doc in rendered:
        schema._validate(doc.body, version)


def test_overlay_never_deploys_the_placeholder_secret(rendered):
    """The operator creates the Secret before applying the overlay; the
    placeholder KEY of k8s/10-secret.yaml must never reach a cluster."""
    assert [doc.kind for doc in rendered if doc.kind == "Secret"] == []
    assert "CHANGE-ME" not in yaml.safe_dump_all([doc.body for doc in rendered])


def test_pods_run_from_images_pulled_from_the_registry(published, rendered, client_env, tmp_path):
    """The rendered Deployments run with `podman kube play`, which pulls every
    image from the registry by digest (none is in podman's store before)."""
    for name in NAMES:
        reference = f"{published['prefix']}/{name}@{published['digests'][name]}"
        run(["podman", "rmi", "--force", reference], check=False)
    podman_kube.remove_leftovers()
    # The Secret as the operator creates it, before the overlay is applied.
    operator_secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "signing-key"},
                       "stringData": {"KEY": secrets.token_hex(32)}}
    copy = podman_kube.make_podman_copy(rendered, EXPECTED_APPS, tmp_path / "podman", secrets.token_hex(4),
                                        pull_policy="IfNotPresent", secret=operator_secret)
    copy.extra_env = {"REGISTRY_AUTH_FILE": client_env["REGISTRY_AUTH_FILE"]}
    try:
        pods.play_until_ready(copy)
        for app in copy.pods.values():
            info = podman_kube.inspect_container(app.app_container)
            assert info["ImageName"].startswith(f"{published['prefix']}/{app.app}@sha256:"), info["ImageName"]
        creator, verifier = copy.pods["creator"], copy.pods["verifier"]
        status, _, token = pods.request(creator.host_port, "POST", "/create",
                                        {"username": "testname", "password": "pass"})
        assert status == 200, token
        status, _, body = pods.request(verifier.host_port, "POST", "/verifier", {"token": token.decode().strip()})
        assert (status, body.decode().strip()) == (200, "testname")
    finally:
        errors = podman_kube.down(copy)
        assert not errors, "teardown failed:\n" + "\n".join(errors)
