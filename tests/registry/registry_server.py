"""A real container registry for the publish tests: CNCF Distribution 2.8
(Debian's `docker-registry`) on 127.0.0.1, with TLS from a test CA and
htpasswd authentication, as a private registry of a team would be.

The CA is installed where podman, skopeo and Docker look for a registry's CA
(`/etc/containers/certs.d/HOST:PORT/ca.crt`, `/etc/docker/certs.d/...`), for
this registry's host and port only, and removed again by `stop()`. Logins go
to a throwaway auth file (REGISTRY_AUTH_FILE for podman and skopeo,
DOCKER_CONFIG for Docker), never to the machine's own.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import bcrypt

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from helpers import free_port  # noqa: E402

CERT_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))
USER = "publisher"


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"openssl {' '.join(args)}:\n{proc.stderr}"


def make_tls(directory: Path) -> None:
    """ca.crt, and server.crt/server.key for 127.0.0.1 signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=wasm-jwt test CA", "-keyout", "ca.key", "-out", "ca.crt",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=directory)
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt",
             cwd=directory)


@dataclasses.dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    password: str
    workdir: Path
    process: subprocess.Popen
    log: Path

    user = USER

    def env(self, auth_dir: Path) -> dict[str, str]:
        """The environment of a client whose logins live in auth_dir."""
        return os.environ | {
            "REGISTRY_AUTH_FILE": str(auth_dir / "auth.json"),
            "DOCKER_CONFIG": str(auth_dir / "docker"),
        }

    def login(self, auth_dir: Path, password: str | None = None) -> dict[str, str]:
        """`podman login` and `docker login` as a user would (password on
        stdin); returns the environment that carries the login."""
        env = self.env(auth_dir)
        (auth_dir / "docker").mkdir(parents=True, exist_ok=True)
        for tool in ("podman", "docker"):
            proc = subprocess.run([tool, "login", "--username", self.user, "--password-stdin", self.host],
                                  input=password or self.password, env=env, capture_output=True,
                                  text=True, timeout=60)
            assert proc.returncode == 0, f"{tool} login {self.host}: {proc.stderr}"
        return env

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for base in CERT_DIRS:
            shutil.rmtree(base / self.host, ignore_errors=True)


def start(workdir: Path, password: str) -> Registry:
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    assert Path(binary).exists(), "docker-registry is not installed (apt-get install docker-registry)"
    workdir.mkdir(parents=True, exist_ok=True)
    make_tls(workdir)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    (workdir / "htpasswd").write_text(f"{USER}:{hashed}\n")
    port = free_port()
    host = f"127.0.0.1:{port}"
    (workdir / "config.yml").write_text(f"""\
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {workdir / "data"}
  delete:
    enabled: true
http:
  addr: {host}
  tls:
    certificate: {workdir / "server.crt"}
    key: {workdir / "server.key"}
auth:
  htpasswd:
    realm: wasm-jwt-test
    path: {workdir / "htpasswd"}
""")
    for base in CERT_DIRS:
        (base / host).mkdir(parents=True, exist_ok=True)
        shutil.copy(workdir / "ca.crt", base / host / "ca.crt")
    log = workdir / "registry.log"
    process = subprocess.Popen([binary, "serve", str(workdir / "config.yml")],
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    registry = Registry(host=host, password=password, workdir=workdir, process=process, log=log)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            registry.stop()
            raise AssertionError(f"docker-registry exited {process.returncode}:\n{registry.log_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return registry
        except OSError:
            if time.monotonic() > deadline:
                registry.stop()
                raise AssertionError(f"docker-registry did not listen on {host}:\n{registry.log_text()}")
            time.sleep(0.2)
