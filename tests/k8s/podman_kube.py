"""Run the k8s/ Deployments as pods with `podman kube play` (podman 4.3).

No Kubernetes cluster can run in CI, but podman can run the pod specs of the
Deployments: init container, shared emptyDir, secretKeyRef, security context,
resource limits. This module turns a *copy* of the manifests into something
podman 4.3 runs, without ever touching the files in k8s/.

Adaptations made to the copy, and why:

* ``replicas: 1`` and ``hostPort``/``hostIP: 127.0.0.1`` on the container
  ports (free ports chosen at run time): podman publishes pods on the host
  instead of Services, and one pod per Deployment is enough.
* ``restartPolicy: OnFailure``: with a Deployment's implicit ``Always``,
  podman 4.3 restarts the init container once it has exited and then fails to
  remove it ("cannot remove container ... as it is running").
* ``imagePullPolicy: Never``: the images are loaded from docker beforehand;
  podman must never try a registry (tests/registry passes another policy:
  there the images come from a registry).
* probes removed: podman 4.3 turns an httpGet livenessProbe into a
  ``curl`` health check run *inside* the container (the images have no curl
  and no shell; named ports even become port 0) driven by systemd timers. The test hits the probe endpoints
  from the host instead.
* unique names (Deployments, volumes, secret): podman's emptyDir is a named
  volume, so two pods with a volume called ``key`` would share it; unique names
  also keep leftovers of an aborted run from colliding with the next one.
* the Secret becomes a podman secret holding ``{"KEY": base64(value)}``: that
  JSON form is what podman 4.3 resolves ``secretKeyRef`` against.
* the token-settings ConfigMap goes to ``podman kube play --configmap``
  (a file of its own; ``settings`` overrides its values, e.g. TOKEN_ALG),
  which is where podman 4.3 resolves ``configMapKeyRef``.
* ``CONTAINERS_CONF`` points to a containers.conf with ``default_ulimits``
  the sandbox allows (podman's defaults raise RLIMIT_NOFILE/NPROC beyond the
  hard limits here, and runc fails with "error setting rlimits").

Services, NetworkPolicies, PDBs and the Namespace are not fed to podman: it
has no notion of them (the structural tests cover them).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from k8s_helpers import (
    SECRET_NAME,
    TOKEN_SETTINGS,
    Doc,
    all_containers,
    deep_copy,
    one,
    pod_spec,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from helpers import free_port  # noqa: E402

E2E_PREFIX = "wasm-jwt-e2e"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def run(cmd: list[str], *, env: dict | None = None, timeout: float = 120,
        check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, timeout=timeout, input=input, capture_output=True)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout.decode(errors='replace')}\n"
            f"--- stderr ---\n{proc.stderr.decode(errors='replace')}"
        )
    return proc


# --------------------------------------------------------------------------
# podman installation
# --------------------------------------------------------------------------


def _catatonit_present() -> bool:
    return bool(shutil.which("catatonit")) or Path("/usr/libexec/podman/catatonit").exists()


def ensure_podman() -> str:
    """Install podman + catatonit with apt if missing (root only); return `podman version`."""
    missing = []
    if not shutil.which("podman"):
        missing.append("podman")
    if not _catatonit_present():
        missing.append("catatonit")  # podman builds its pause image from it
    if missing:
        if os.geteuid() != 0:
            raise RuntimeError(f"{', '.join(missing)} missing and not root: install them with apt")
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env, timeout=600)
        run(["apt-get", "install", "-y", "-qq", *missing], env=env, timeout=900)
    run(["podman", "info"], timeout=120)  # fails loudly if podman cannot work here
    return run(["podman", "version", "--format", "{{.Client.Version}}"]).stdout.decode().strip()


def containers_conf(path: Path) -> Path:
    """A containers.conf whose default ulimits stay within what this sandbox allows."""
    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 20000 if nofile_hard == resource.RLIM_INFINITY else min(nofile_hard, 20000)
    # podman lowers its own RLIMIT_NPROC (32768 seen here); ask for less.
    nproc = 4096
    path.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
    )
    return path


# --------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------


def docker_image_id(image: str) -> str:
    out = run(["docker", "image", "inspect", "--format", "{{.Id}}", image], check=False)
    if out.returncode != 0:
        raise RuntimeError(f"image {image} is not in docker: run scripts/build-images.sh")
    return out.stdout.decode().strip().removeprefix("sha256:")


def podman_image_id(image: str) -> str | None:
    out = run(["podman", "image", "inspect", "--format", "{{.Id}}", image], check=False)
    return out.stdout.decode().strip() if out.returncode == 0 else None


def load_images_from_docker(images: list[str]) -> dict[str, str]:
    """`docker save IMAGES | podman load`; check podman resolves each name to the
    image docker built and return {image: image ID}."""
    expected = {image: docker_image_id(image) for image in images}
    save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
    try:
        load = subprocess.run(["podman", "load"], stdin=save.stdout, capture_output=True, timeout=600)
    finally:
        save.stdout.close()
        save_rc = save.wait(timeout=600)
    if save_rc != 0 or load.returncode != 0:
        raise RuntimeError(
            f"docker save | podman load failed ({save_rc}/{load.returncode}): "
            f"{load.stderr.decode(errors='replace')}"
        )
    for image, image_id in expected.items():
        got = podman_image_id(image)
        if got != image_id:
            raise RuntimeError(f"podman has {image} as {got}, docker as {image_id}")
    return expected


# --------------------------------------------------------------------------
# the adapted copy
# --------------------------------------------------------------------------


@dataclasses.dataclass
class PodUnderTest:
    app: str
    deployment: str  # renamed Deployment
    pod: str  # podman pod name
    app_container: str  # podman name of the app container
    host_port: int
    container_port: int
    probes: dict[str, dict[str, Any]]  # probe name -> original probe (from k8s/)
    original: dict[str, Any]  # the unmodified Deployment


@dataclasses.dataclass
class PodmanCopy:
    workdir: Path
    kube_file: Path
    secret_name: str
    secret_file: Path
    configmap_file: Path
    conf_file: Path
    volumes: list[str]
    pods: dict[str, PodUnderTest]
    # e.g. REGISTRY_AUTH_FILE, for pods whose images come from a registry
    extra_env: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return os.environ | {"CONTAINERS_CONF": str(self.conf_file)} | self.extra_env


def _podman_secret_json(secret: dict[str, Any]) -> str:
    """The Secret as podman 4.3 reads it: a JSON object of base64 values."""
    data = dict(secret.get("data") or {})
    for key, value in (secret.get("stringData") or {}).items():
        data[key] = base64.b64encode(value.encode()).decode()
    return json.dumps(data)


def make_podman_copy(docs: list[Doc], apps: dict[str, tuple[str, int, int]],
                     workdir: Path, suffix: str, pull_policy: str = "Never",
                     secret: dict[str, Any] | None = None,
                     settings: dict[str, str] | None = None) -> PodmanCopy:
    """Write the adapted copy of the Deployments (and secret, conf) into workdir.
    pull_policy: "Never" for images loaded from docker, anything else to pull
    them from their registry. secret: the Secret the operator created, for
    docs that leave it out (a registry overlay); else the one in docs.
    settings: values that replace those of the token-settings ConfigMap."""
    prefix = f"{E2E_PREFIX}-{suffix}"
    secret_name = f"{prefix}-{SECRET_NAME}"
    deployments, volumes, pods = [], [], {}
    for app, (container_name, container_port, _replicas) in sorted(apps.items()):
        original = one(docs, "Deployment", app).body
        dep = deep_copy(original)
        dep["metadata"]["name"] = name = f"{prefix}-{app}"
        dep["spec"]["replicas"] = 1
        spec = pod_spec(dep)
        spec["restartPolicy"] = "OnFailure"
        renamed_volumes = {}
        for volume in spec.get("volumes", []):
            renamed_volumes[volume["name"]] = volume["name"] = f"{prefix}-{app}-{volume['name']}"
            volumes.append(volume["name"])
        host_port = free_port()
        probes = {}
        for c in all_containers(spec):
            c["imagePullPolicy"] = pull_policy
            for mount in c.get("volumeMounts", []):
                mount["name"] = renamed_volumes[mount["name"]]
            for env in c.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["name"] == SECRET_NAME:
                    ref["name"] = secret_name
            for probe in PROBES:
                if probe in c:
                    probe_body = c.pop(probe)
                    if c["name"] == container_name:
                        probes[probe] = probe_body
            # Only the API port is published; the test reads metrics from
            # inside the pod, as a scraper in the cluster network would.
            if "ports" in c:
                c["ports"] = [p for p in c["ports"] if p.get("name") != "metrics"]
            for p in c.get("ports", []):
                assert p["containerPort"] == container_port, "one API port per app container"
                p["hostPort"] = host_port
                p["hostIP"] = "127.0.0.1"
        deployments.append(dep)
        pod = f"{name}-pod-0"  # podman's name for the Deployment's (only) pod
        pods[app] = PodUnderTest(
            app=app, deployment=name, pod=pod, app_container=f"{pod}-{container_name}",
            host_port=host_port, container_port=container_port, probes=probes,
            original=original,
        )

    workdir.mkdir(parents=True, exist_ok=True)
    kube_file = workdir / "deployments.yaml"
    kube_file.write_text(yaml.safe_dump_all(deployments, sort_keys=False))
    secret_file = workdir / "secret.json"
    if secret is None:
        secret = one(docs, "Secret", SECRET_NAME).body
    secret_file.write_text(_podman_secret_json(secret))
    secret_file.chmod(0o600)
    configmap = deep_copy(one(docs, "ConfigMap", TOKEN_SETTINGS).body)
    configmap["data"].update(settings or {})
    configmap_file = workdir / "configmap.yaml"
    configmap_file.write_text(yaml.safe_dump(configmap, sort_keys=False))
    return PodmanCopy(
        workdir=workdir, kube_file=kube_file, secret_name=secret_name, secret_file=secret_file,
        configmap_file=configmap_file,
        conf_file=containers_conf(workdir / "containers.conf"), volumes=volumes, pods=pods,
    )


# --------------------------------------------------------------------------
# lifecycle
# --------------------------------------------------------------------------


def remove_leftovers() -> None:
    """Remove pods/secrets an earlier, aborted run of this test left behind."""
    pods = run(["podman", "pod", "ps", "--format", "{{.Name}}"]).stdout.decode().split()
    for pod in pods:
        if pod.startswith(f"{E2E_PREFIX}-"):
            run(["podman", "pod", "rm", "--force", pod], check=False)
    secrets = run(["podman", "secret", "ls", "--format", "{{.Name}}"]).stdout.decode().split()
    for secret in secrets:
        if secret.startswith(f"{E2E_PREFIX}-"):
            run(["podman", "secret", "rm", secret], check=False)
    volumes = run(["podman", "volume", "ls", "--format", "{{.Name}}"]).stdout.decode().split()
    for volume in volumes:
        if volume.startswith(f"{E2E_PREFIX}-"):
            run(["podman", "volume", "rm", "--force", volume], check=False)


def play(copy: PodmanCopy) -> None:
    run(["podman", "secret", "create", copy.secret_name, str(copy.secret_file)], env=copy.env)
    run(["podman", "kube", "play", "--configmap", str(copy.configmap_file), str(copy.kube_file)],
        env=copy.env, timeout=300)


def _names(kind: str) -> set[str]:
    return set(run(["podman", kind, "ls" if kind != "pod" else "ps", "--format", "{{.Name}}"])
               .stdout.decode().split())


def down(copy: PodmanCopy) -> list[str]:
    """Tear everything down, even after a partial `kube play`.

    `podman kube down` stops at the first pod that does not exist, so whatever
    it leaves is removed by name. Returns what could not be removed (teardown
    must not stop early, and must not hide leftovers)."""
    run(["podman", "kube", "down", str(copy.kube_file)], env=copy.env, check=False, timeout=120)
    for pod in {p.pod for p in copy.pods.values()} & _names("pod"):
        run(["podman", "pod", "rm", "--force", pod], check=False, timeout=120)
    if copy.secret_name in _names("secret"):
        run(["podman", "secret", "rm", copy.secret_name], check=False)
    for volume in set(copy.volumes) & _names("volume"):
        run(["podman", "volume", "rm", "--force", volume], check=False)
    left = (({p.pod for p in copy.pods.values()} & _names("pod"))
            | ({copy.secret_name} & _names("secret"))
            | (set(copy.volumes) & _names("volume")))
    return [f"left behind: {name}" for name in sorted(left)]


def inspect_container(name: str) -> dict[str, Any]:
    return json.loads(run(["podman", "container", "inspect", name]).stdout)[0]


def diagnostics(copy: PodmanCopy) -> str:
    """Everything useful for a failure message."""
    parts = [run(["podman", "ps", "-a", "--pod"], check=False).stdout.decode(errors="replace")]
    names = run(["podman", "ps", "-a", "--format", "{{.Names}}"], check=False).stdout.decode().split()
    for name in names:
        if name.startswith(f"{E2E_PREFIX}-"):
            logs = run(["podman", "logs", "--tail", "50", name], check=False)
            parts.append(f"--- logs {name} ---\n{logs.stdout.decode(errors='replace')}"
                         f"{logs.stderr.decode(errors='replace')}")
    return "\n".join(parts)
