#!/usr/bin/env python3
"""Measurement half of scripts/bench.sh (which builds everything first).

Starts every system under test on 127.0.0.1, checks that it answers the
contract, loads it with wrk, samples its memory, measures start-up, and writes
a markdown report. Standard library only.

Exit status: 0 when every measurement ran (whatever the numbers), 1 when the
harness itself broke (a server never came up or failed the contract check, wrk
produced no result or reported socket errors), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import http.server
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = HERE / "post.lua"

CREATE_BODY = '{"username":"testname","password":"pass"}'
TOKEN_TTL = "86400"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Measured again without pinning: the runner, its floor, and what it is compared with.
UNPINNED_SYSTEMS = ("runner-aot", "floor", "wasmtime", "spin", "go", "native")

FAILURES: list[str] = []


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> None:
    """A harness failure: recorded, reported, and turned into exit status 1."""
    FAILURES.append(msg)
    log(f"ERROR: {msg}")


# --------------------------------------------------------------------------
# Systems under test


class System:
    def __init__(self, sid, label, kind, artifact=None, flags=(), variant=False,
                 binary=None, guest_reads_key=False, alg="HS256", cwasm_dir=None):
        self.id = sid
        self.alg = alg  # TOKEN_ALG of the deployment it stands for
        self.cwasm_dir = cwasm_dir  # components other than cfg.cwasm_dir's
        self.guest_reads_key = guest_reads_key
        self.binary = binary  # a runner binary other than cfg.runner
        self.label = label
        self.kind = kind  # runner | floor | wasmtime | spin | go | native
        self.artifact = artifact  # wasm | cwasm (runner)
        self.flags = list(flags)
        self.variant = variant  # a design-choice variant of the runner

    def keydir(self, cfg, endpoint: str) -> Path:
        """HS256: the one key directory; EdDSA and ES256: the endpoint's own,
        as keycreator writes them (the verifier's holds public keys only)."""
        if self.alg == "HS256":
            return Path(cfg.keydir)
        return Path(cfg.alg_keys) / self.alg / endpoint

    def command(self, cfg, endpoint: str, port: int) -> list[str]:
        addr = f"127.0.0.1:{port}"
        keydir = self.keydir(cfg, endpoint)
        if self.kind == "runner":
            art = Path(self.cwasm_dir or cfg.cwasm_dir if self.artifact == "cwasm" else cfg.wasm_dir)
            art = art / f"{endpoint}.{self.artifact}"
            # As the images run it: the runner passes the key files' contents
            # (`--env-from-file`; an absent file leaves its variable unset)
            # unless this variant measures the guest reading the file itself.
            key = [] if self.guest_reads_key else [
                "--env-from-file", f"SIGNING_KEY={keydir / 'key.txt'}",
                "--env-from-file", f"SIGNING_JWK={keydir / 'signing-key.json'}",
                "--env-from-file", f"JWKS={keydir / 'jwks.json'}"]
            return [self.binary or cfg.runner, "--addr", addr, "--dir", f"{keydir}::/usr/share/key",
                    *key, "--env", f"TOKEN_TTL_SECONDS={TOKEN_TTL}", "--env", f"TOKEN_ALG={self.alg}",
                    *self.flags, str(art)]
        if self.kind == "floor":
            # The same runner on the floor component (answers 200 "ok" to
            # anything): what the runner itself costs per request.
            return [cfg.runner, "--addr", addr, *self.flags, cfg.floor_cwasm]
        if self.kind == "wasmtime":
            return [cfg.wasmtime, "serve", "-Scli", "--dir", f"{keydir}::/usr/share/key",
                    "--env", f"TOKEN_TTL_SECONDS={TOKEN_TTL}", "--addr", addr,
                    str(Path(cfg.wasm_dir) / f"{endpoint}.wasm")]
        if self.kind == "spin":
            # The repository's spin.toml with the same .wasm and key (see
            # spin_app): one listener serves both routes, whichever is loaded.
            return [cfg.spin, "up", "--from", str(Path(cfg.spin_app) / "spin.toml"),
                    "--listen", addr, "--env", f"TOKEN_TTL_SECONDS={TOKEN_TTL}"]
        if self.kind == "go":
            return [cfg.go, "--endpoint", endpoint, "--addr", addr,
                    "--key-file", str(Path(keydir) / "key.txt")]
        if self.kind == "native":
            return [cfg.native, "--endpoint", endpoint, "--addr", addr,
                    "--key-file", str(Path(keydir) / "key.txt")]
        raise ValueError(self.kind)

    def probe(self, endpoint: str) -> tuple[str, str, int]:
        """The request that says the server is up: (method, path, status)."""
        if self.kind == "spin":
            # Spin routes only /create and /verifier: the component answering
            # its own 405 shows that Spin serves and instantiates it.
            return ("GET", "/create" if endpoint == "creator" else "/verifier", 405)
        return ("GET", "/healthz", 200)

    def env(self, cfg=None):
        env = dict(os.environ)
        env["TOKEN_TTL_SECONDS"] = TOKEN_TTL  # native-server and Go read them directly
        env["TOKEN_ALG"] = self.alg
        env.setdefault("RUST_LOG", "warn")
        if self.kind == "spin" and cfg is not None:
            # `spin up` copies the components' files (the key) into a
            # temporary directory, and keeps the components compiled by
            # wasmtime in its cache (XDG_CACHE_HOME, else ~/.cache): keep
            # both under the work directory, not in the user's home.
            env["TMPDIR"] = str(Path(cfg.spin_app) / "tmp")
            env["XDG_CACHE_HOME"] = str(Path(cfg.spin_app) / "cache")
        return env


def all_systems(cfg) -> list[System]:
    systems = [
        System("runner-aot", "runner AOT (.cwasm)", "runner", "cwasm"),
        System("runner-jit", "runner JIT (.wasm)", "runner", "wasm"),
        System("runner-aot-nopool", "runner AOT `--no-pooling`", "runner", "cwasm",
               ["--no-pooling"]),
        System("runner-aot-nolog", "runner AOT `--no-access-log`", "runner", "cwasm",
               ["--no-access-log"], variant=True),
        System("runner-aot-fspool", "runner AOT `--fs-on-blocking-pool`, key file read by the guest",
               "runner", "cwasm", ["--fs-on-blocking-pool"], variant=True, guest_reads_key=True),
        System("runner-aot-guestkey", "runner AOT, key file read by the guest (no `--env-from-file`)",
               "runner", "cwasm", variant=True, guest_reads_key=True),
        # The images run with metrics on; the runner's default is off.
        System("runner-aot-metrics", "runner AOT `--metrics-addr` (as the images run)", "runner",
               "cwasm", ["--metrics-addr", "127.0.0.1:0"], variant=True),
        # OpenTelemetry tracing on, exporting to a collector stand-in that
        # accepts and discards (`discard_collector`): every request sampled,
        # then a tenth of them.
        System("runner-aot-otel", "runner AOT, tracing on (sampler ratio 1.0)", "runner", "cwasm",
               ["--otlp-endpoint", cfg.collector_url], variant=True),
        System("runner-aot-otel-0.1", "runner AOT, tracing on (sampler ratio 0.1)", "runner", "cwasm",
               ["--otlp-endpoint", cfg.collector_url, "--otel-traces-sampler", "traceidratio",
                "--otel-traces-sampler-arg", "0.1"], variant=True),
    ]
    if cfg.runner_musl:
        # The binary the images ship: static musl, no compiler, same .cwasm.
        systems.insert(1, System("runner-aot-musl", "runner AOT, static musl (image build)",
                                 "runner", "cwasm", binary=cfg.runner_musl))
    if cfg.floor_cwasm:
        systems.insert(1, System("floor", "runner AOT, floor component", "floor"))
    if cfg.wasmtime:
        systems.append(System("wasmtime", f"`wasmtime serve` {cfg.wasmtime_version}", "wasmtime"))
    if cfg.spin:
        systems.append(System("spin", f"Spin {cfg.spin_version} (`spin up`)", "spin"))
    if cfg.go:
        systems.append(System("go", "Go net/http + golang-jwt", "go"))
    systems.append(System("native", "native-server (hyper)", "native"))
    return systems


def discard_collector() -> str:
    """An OTLP/HTTP endpoint that accepts every export and discards it (in a
    thread of this process, on the load generator's side): what tracing
    costs the runner, not what a collector costs. Returns its base URL."""
    class Discard(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Discard)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


# --------------------------------------------------------------------------
# Processes, HTTP and /proc


def pinned(cmd: list[str], cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu, *cmd] if cpu is not None else cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_call(port, method, path, body=None, timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_healthy(port, deadline_s, proc=None, poll_sleep=0.0005, probe=("GET", "/healthz", 200)):
    """Polls GET /healthz (or `probe`: method, path, status) until it answers
    as expected; returns seconds waited or None."""
    method, path, expected = probe
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < deadline_s:
        if proc is not None and proc.poll() is not None:
            return None
        try:
            status, _ = http_call(port, method, path, timeout=2.0)
            if status == expected:
                return time.perf_counter() - t0
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(poll_sleep)
    return None


def signal_server(proc: subprocess.Popen, sig):
    """Servers run in their own session: signal the whole process group, so
    that children (`spin up` runs its trigger as one) stop with them."""
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        proc.send_signal(sig)


def stop(proc: subprocess.Popen, grace=5.0):
    if proc.poll() is not None:
        return
    signal_server(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_server(proc, signal.SIGKILL)
        proc.wait()


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (one process for every server but Spin,
    whose `spin up` runs the HTTP trigger as a child process)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def proc_status_kib(pid: int) -> dict:
    """VmRSS and VmHWM summed over the server's process tree."""
    out = {}
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = out.get(key, 0) + int(value.split()[0])
        except OSError:
            pass
    return out


def proc_cpu_ticks(pid: int) -> int:
    """utime + stime of the server's process tree."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def system_cpu_ticks() -> tuple[int, int]:
    """(busy, total) ticks over all CPUs."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (parts + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


class Quiet:
    """Waits, within a time budget, for other work on the machine to stop
    before a measured run, so colleagues' builds disturb fewer runs."""

    def __init__(self, budget_s: float, per_run_s: float, threshold_pct: float = 10.0):
        self.budget = budget_s
        self.per_run = per_run_s
        self.threshold = threshold_pct
        self.waited = 0.0

    @staticmethod
    def busy_pct(window=0.3) -> float:
        b0, t0 = system_cpu_ticks()
        time.sleep(window)
        b1, t1 = system_cpu_ticks()
        return 100.0 * (b1 - b0) / max(t1 - t0, 1)

    def wait(self):
        if self.budget <= 0:
            return
        start = time.monotonic()
        announced = False
        while self.busy_pct() > self.threshold:
            spent = time.monotonic() - start
            if spent > self.per_run or self.waited + spent > self.budget:
                break
            if not announced:
                log(f"machine busy (other processes); waiting up to {self.per_run:.0f}s for quiet")
                announced = True
        self.waited += time.monotonic() - start


# --------------------------------------------------------------------------
# wrk


RESULT_RE = re.compile(r"^BENCH_RESULT (.*)$", re.M)


def run_wrk(cfg, port, path, body_file, conns, threads, duration, server_pid):
    cmd = pinned(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency",
                  "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}"],
                 cfg.client_cpu)
    env = dict(os.environ, BENCH_PATH=path, BENCH_BODY_FILE=str(body_file))
    busy0, total0 = system_cpu_ticks()
    srv0 = proc_cpu_ticks(server_pid)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 gives wrk's own CPU time; read the pipes in the meantime.
    try:
        out, err = proc.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        fail(f"wrk did not finish: {' '.join(cmd)}")
        return None
    srv1 = proc_cpu_ticks(server_pid)
    busy1, total1 = system_cpu_ticks()
    text = out.decode(errors="replace")
    m = RESULT_RE.search(text)
    if proc.returncode != 0 or not m:
        fail(f"wrk failed (exit {proc.returncode}): {' '.join(cmd)}\n{text}{err.decode(errors='replace')}")
        return None
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    socket_errors = int(r["connect"] + r["read"] + r["write"] + r["timeout"])
    r["socket_errors"] = socket_errors
    server_ticks = srv1 - srv0
    r["server_cpu_us_per_req"] = (server_ticks / CLK_TCK * 1e6 / r["requests"]) if r["requests"] else 0.0
    r["_busy"] = busy1 - busy0
    r["_server_ticks"] = server_ticks
    r["_wall_ticks"] = max(total1 - total0, 1)
    if socket_errors:
        fail(f"wrk reported {socket_errors} socket errors against {' '.join(cmd)} "
             f"(connect {int(r['connect'])}, read {int(r['read'])}, write {int(r['write'])}, "
             f"timeout {int(r['timeout'])})")
    return r


class ChildTicks:
    """Tracks the CPU time of finished children (wrk) between two points."""

    def __init__(self):
        t = os.times()
        self.last = t.children_user + t.children_system

    def take(self) -> float:
        t = os.times()
        now = t.children_user + t.children_system
        delta, self.last = now - self.last, now
        return delta


# --------------------------------------------------------------------------
# Measurements


def median_spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def start_server(cfg, system: System, endpoint: str):
    port = free_port()
    cmd = pinned(system.command(cfg, endpoint, port), cfg.server_cpu)
    errlog = open(Path(cfg.workdir) / f"{system.id}-{endpoint}.stderr", "wb")
    # The runner's default access log goes to /dev/null, as asked: logging
    # stays on, its cost is measured, the terminal is not flooded.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errlog,
                            env=system.env(cfg), start_new_session=True)
    try:
        waited = wait_healthy(port, cfg.server_start_timeout, proc, poll_sleep=0.01,
                              probe=system.probe(endpoint))
    except BaseException:
        stop(proc)
        raise
    if waited is None:
        stop(proc)
        fail(f"{system.label} ({endpoint}) never answered {' '.join(map(str, system.probe(endpoint)))} "
             f"within {cfg.server_start_timeout}s; see {errlog.name}\n  command: {' '.join(cmd)}")
        return None
    time.sleep(0.2)  # let start-up settle before sampling idle memory
    return {"proc": proc, "port": port, "cmd": cmd, "idle": proc_status_kib(proc.pid)}


def check_contract(system, endpoint, port, token):
    try:
        if system.kind == "floor":
            status, body = http_call(port, "POST", "/", CREATE_BODY)
            ok = status == 200 and body == b"ok"
        elif endpoint == "creator":
            status, body = http_call(port, "POST", "/create", CREATE_BODY)
            ok = status == 200 and body.count(b".") == 2
        else:
            status, body = http_call(port, "POST", "/verifier", json.dumps({"token": token}))
            ok = status == 200 and body == b"testname"
    except (OSError, http.client.HTTPException) as e:
        status, body, ok = None, str(e).encode(), False
    if not ok:
        fail(f"{system.label} ({endpoint}) failed the contract check: {status} {body[:200]!r}")
    return ok


def get_token(cfg, systems, sid="runner-aot") -> str | None:
    """A long-lived token from the runner's creator, for the verifier load."""
    system = next(s for s in systems if s.id == sid)
    server = start_server(cfg, system, "creator")
    if server is None:
        return None
    try:
        status, body = http_call(server["port"], "POST", "/create", CREATE_BODY)
    finally:
        stop(server["proc"])
    if status != 200:
        fail(f"could not get a token from the creator: {status} {body[:200]!r}")
        return None
    return body.decode()


def bench_endpoint(cfg, systems, endpoint, body_file, path, token, results, latency_runs=True):
    log(f"== {endpoint}: starting {len(systems)} servers")
    servers = {}
    try:
        for system in systems:
            server = start_server(cfg, system, endpoint)
            if server is None:
                continue
            servers[system.id] = server
            if not check_contract(system, endpoint, server["port"], token):
                stop(servers.pop(system.id)["proc"])
        live = [s for s in systems if s.id in servers]
        for system in live:
            srv = servers[system.id]
            log(f"warm-up {system.label} {endpoint} {cfg.warmup}s")
            run_wrk(cfg, srv["port"], path, body_file, 32, 2, cfg.warmup, srv["proc"].pid)
        per = {s.id: {"c32": [], "c1": []} for s in live}
        children = ChildTicks()
        for rnd in range(cfg.reps):
            # Rotate the order each round so slow drifts (other work on the
            # machine, thermal) spread over all systems instead of one.
            order = live[rnd % len(live):] + live[:rnd % len(live)] if live else []
            for system in order:
                srv = servers[system.id]
                kinds = [("c32", 32, 2, cfg.duration)]
                if latency_runs:
                    kinds.append(("c1", 1, 1, cfg.duration_c1))
                for key, conns, threads, dur in kinds:
                    cfg.quiet.wait()
                    log(f"round {rnd + 1}/{cfg.reps}: {system.label} {endpoint} "
                        f"{conns} conn, {dur}s")
                    children.take()
                    r = run_wrk(cfg, srv["port"], path, body_file, conns, threads, dur,
                                srv["proc"].pid)
                    if r is None:
                        continue
                    wrk_ticks = children.take() * CLK_TCK
                    r["foreign_cpu_pct"] = max(
                        0.0, 100.0 * (r["_busy"] - r["_server_ticks"] - wrk_ticks) / r["_wall_ticks"])
                    per[system.id][key].append(r)
                    if rnd == cfg.reps - 1 and key == "c32":
                        srv["end"] = proc_status_kib(srv["proc"].pid)
        for system in live:
            srv = servers[system.id]
            entry = results.setdefault(system.id, {"label": system.label})
            entry[endpoint] = {
                "memory": {"idle": srv["idle"], "end": srv.get("end", {})},
                "command": srv["cmd"],
            }
            for key in ("c32", "c1"):
                runs = per[system.id][key]
                if not runs:
                    continue
                entry[endpoint][key] = {
                    "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
                    **{m: median_spread([r[m] for r in runs]) for m in
                       ("rps", "p50", "p99", "p999", "status", "server_cpu_us_per_req",
                        "foreign_cpu_pct")},
                }
    finally:
        for srv in servers.values():
            stop(srv["proc"])


INTERLEAVED = (("floor", "creator"), ("runner-aot", "creator"), ("runner-aot", "verifier"),
               ("go", "creator"), ("go", "verifier"))


def interleaved_pass(cfg, systems, bodies, token, rounds, duration):
    """Server CPU per request of the floor, the runner's services and Go, in
    short runs that alternate between them (forwards, then backwards), all
    servers running at once: neighbours in time share the machine's state,
    so the per-round ratios are steadier than ratios of the medians above,
    whose runs of one system are minutes from the next's."""
    by_id = {s.id: s for s in systems}
    servers = {}
    per = {}
    try:
        for sid, endpoint in INTERLEAVED:
            system = by_id.get(sid)
            if system is None:
                continue
            server = start_server(cfg, system, endpoint)
            if server is None:
                continue
            if not check_contract(system, endpoint, server["port"], token):
                stop(server["proc"])
                continue
            servers[(sid, endpoint)] = server
        order = list(servers)
        for key in order:
            path, body = bodies[key[1]]
            run_wrk(cfg, servers[key]["port"], path, body, 32, 2, cfg.warmup,
                    servers[key]["proc"].pid)
        per = {key: [] for key in order}
        for rnd in range(rounds):
            for key in (order if rnd % 2 == 0 else order[::-1]):
                cfg.quiet.wait()
                log(f"interleaved {rnd + 1}/{rounds}: {by_id[key[0]].label} {key[1]} {duration}s")
                path, body = bodies[key[1]]
                r = run_wrk(cfg, servers[key]["port"], path, body, 32, 2, duration,
                            servers[key]["proc"].pid)
                per[key].append(r["server_cpu_us_per_req"] if r else None)
    finally:
        for server in servers.values():
            stop(server["proc"])
    return {"rounds": rounds, "duration": duration,
            "cpu": {f"{sid}/{endpoint}": values for (sid, endpoint), values in per.items()}}


def measure_startup(cfg, system: System, reps: int):
    """Process start to the first 200 from GET /healthz, in seconds."""
    times = []
    for i in range(reps + 1):  # the first run warms the page cache; not counted
        port = free_port()
        cmd = pinned(system.command(cfg, "creator", port), cfg.server_cpu)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=system.env(cfg), start_new_session=True)
        try:
            waited = wait_healthy(port, cfg.server_start_timeout, proc,
                                  probe=system.probe("creator"))
            t1 = time.perf_counter()
        finally:
            stop(proc)
        if waited is None:
            fail(f"start-up: {system.label} never answered "
                 f"{' '.join(map(str, system.probe('creator')))}")
            return None
        if i > 0:
            times.append(t1 - t0)
    return median_spread(times)


def docker_ok() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_size(image: str) -> int | None:
    try:
        p = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return int(p.stdout.strip()) if p.returncode == 0 and p.stdout.strip().isdigit() else None


def measure_container_start(cfg, image: str, reps: int):
    """Times `docker run -d` and then the first 200 from /healthz through the
    published port; returns (total, docker run alone) as median_spread dicts."""
    totals, runs = [], []
    for i in range(reps + 1):  # first run not counted (warms page cache, docker state)
        port = free_port()
        name = f"bench-start-{os.getpid()}-{i}"
        cmd = ["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000",
               "-v", f"{cfg.keydir}:/usr/share/key:ro", image]
        try:
            t0 = time.perf_counter()
            # Probe only once docker says the container runs, as a user would:
            # probing the published port while docker is still wiring the
            # container's network makes docker's userland proxy send its SYN
            # into a network that is not up yet, and the kernel retries only
            # after 1 s (measured: ~1.05 s every time, an artifact of probing).
            run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 timeout=60)
            t_run = time.perf_counter()
            waited = wait_healthy(port, 60) if run.returncode == 0 else None
            t1 = time.perf_counter()
            err = run.stderr
        except subprocess.TimeoutExpired:
            waited, err = None, b"docker run timed out"
        finally:
            subprocess.run(["docker", "rm", "-f", name], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        if waited is None:
            log(f"container start: {image} never answered /healthz: {err.decode(errors='replace')}")
            error = {"error": "never answered /healthz (" + err.decode(errors="replace").strip()[:200] + ")"}
            return error, error
        if i > 0:
            totals.append(t1 - t0)
            runs.append(t_run - t0)
    return median_spread(totals), median_spread(runs)


# --------------------------------------------------------------------------
# Report


def cmd_out(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine(cfg) -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    wrk_version = cmd_out(["sh", "-c", "wrk -v 2>&1 | head -1"]).split(" Copyright")[0]
    commit = cmd_out(["git", "-C", str(cfg.root), "rev-parse", "--short", "HEAD"])
    dirty = cmd_out(["git", "-C", str(cfg.root), "status", "--porcelain"])
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "rustc": cmd_out(["rustc", "--version"]),
        "wrk": wrk_version,
        "wasmtime": cfg.wasmtime_version or "not installed",
        "spin": cfg.spin_version or "not given",
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }


def ms(us):
    return f"{us / 1000:.2f}"


def fmt(ms_, key, scale=None, digits=0):
    """'median (min–max)' for one metric summary."""
    s = ms_.get(key) if ms_ else None
    if not s:
        return "—"
    f = scale or (lambda v: f"{v:,.{digits}f}")
    if s["n"] == 1 or s["min"] == s["max"]:
        return f(s["median"])
    return f"{f(s['median'])} ({f(s['min'])}–{f(s['max'])})"


def mib(kib):
    return f"{kib / 1024:.1f}" if kib else "—"


def get(results, sid, endpoint, key, metric):
    try:
        return results[sid][endpoint][key][metric]["median"]
    except (KeyError, TypeError):
        return None


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "—"


def round_ratios(a, b):
    """a / b for each round of the interleaved pass in which both were measured."""
    return [x / y for x, y in zip(a, b) if x and y]


def report(cfg, results, unpinned, interleaved, startup, containers, images, mach,
           systems) -> str:
    L = []
    w = L.append
    mode = "quick" if cfg.quick else "full"
    w(f"## The last {mode} run")
    w("")
    w(f"Generated by `scripts/bench.sh{' --quick' if cfg.quick else ''}` ({mode} mode) on "
      f"{mach['date']}. A run replaces what it generates, between the markers, and nothing else.")
    w("")
    w("### Machine and method")
    w("")
    w(f"- CPU: {mach['nproc']} × {mach['cpu']}; memory {mach['memory']}; kernel {mach['kernel']}")
    w(f"- {mach['rustc']}; {mach['wrk']}; wasmtime-cli {mach['wasmtime']}; commit {mach['commit']}")
    pin = (f"servers pinned to CPU {cfg.server_cpu}, wrk to CPU {cfg.client_cpu} (`taskset`)"
           if cfg.server_cpu is not None else "no CPU pinning (server and wrk share all CPUs)")
    w(f"- {pin}. Each server therefore runs on one core (tokio sizes its pool from the "
      "affinity mask), and the load generator never steals its CPU." if cfg.server_cpu is not None
      else f"- {pin}.")
    w(f"- Load: wrk, POST with a Lua body script (`scripts/bench/post.lua`), "
      f"{cfg.duration}s runs at 32 connections / 2 threads and {cfg.duration_c1}s runs at "
      f"1 connection; {cfg.reps} round(s), systems in rotating order each round, all servers "
      f"warmed up for {cfg.warmup}s first. Figures are `median (min–max)` over the rounds.")
    if cfg.quiet.budget > 0:
        w(f"- Before each run the harness waits (at most {cfg.quiet.per_run:.0f} s, "
          f"{cfg.quiet.budget:.0f} s in all) until other processes use < {cfg.quiet.threshold:.0f} % "
          f"of the CPUs; this run waited {cfg.quiet.waited:.0f} s in all. The *other CPU* column "
          "shows what remained.")
    w("- Every server is checked to answer the contract (200 and a token / `testname`) "
      "before it is loaded. The verifier load uses one token from the runner's creator "
      f"(`TOKEN_TTL_SECONDS={TOKEN_TTL}`).")
    w("- The runner runs as the images run it, with `--env-from-file SIGNING_KEY=KEYDIR/key.txt`, "
      "and with its default JSON access log to /dev/null; `runner --no-access-log` and the "
      "guest reading the key file itself are measured as variants. `wasmtime serve` (whose "
      "guest reads the key file) runs as "
      "`wasmtime serve -Scli --dir KEYDIR::/usr/share/key --env TOKEN_TTL_SECONDS=… --addr …`.")
    if cfg.spin:
        w(f"- Spin {cfg.spin_version} runs the repository's `spin.toml` with the same `.wasm` and "
          "key directory: `spin up --from spin.toml --listen 127.0.0.1:PORT --env "
          "TOKEN_TTL_SECONDS=…`; one listener serves both routes (started once per endpoint "
          "table), its guests read the key file (copied at start-up), and its CPU and memory are "
          "those of `spin up` and the trigger process it runs, summed. It is up when the "
          "component answers `GET` on its route with its own 405 (Spin routes no `/healthz`). "
          "Spin compiles the components at start-up and keeps them in its wasmtime cache "
          "(under the work directory): the uncounted first start-up fills it, later ones "
          "load from it.")
    else:
        w("- Spin: not measured (give `SPIN=/path/to/spin` or put `spin` on PATH to add it).")
    w("- *server CPU µs/req*: CPU time (user+sys) the server process used during the run divided "
      "by requests served; it does not depend on how the load generator shares the machine. "
      "*other CPU*: share of all CPUs used by processes other than the server and wrk during "
      "the run (noise from the rest of the machine).")
    w("")

    for endpoint, path in (("creator", "/create"), ("verifier", "/verifier")):
        w(f"### POST {path}")
        w("")
        w("#### 32 connections")
        w("")
        w("| System | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | server CPU µs/req | "
          "CPU vs floor | vs `wasmtime serve` | vs Go | vs native | other CPU % |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|")
        base_wt = get(results, "wasmtime", endpoint, "c32", "rps")
        base_go = get(results, "go", endpoint, "c32", "rps")
        base_nat = get(results, "native", endpoint, "c32", "rps")
        floor_cpu = get(results, "floor", endpoint, "c32", "server_cpu_us_per_req")
        for s in systems:
            e = results.get(s.id, {}).get(endpoint)
            if not e:
                w(f"| {s.label} | failed | | | | | | | | | | |")
                continue
            c = e["c32"]
            rps = get(results, s.id, endpoint, "c32", "rps")
            cpu = get(results, s.id, endpoint, "c32", "server_cpu_us_per_req")
            w(f"| {s.label} | {fmt(c, 'rps')} | {fmt(c, 'p50', ms)} | {fmt(c, 'p99', ms)} | "
              f"{fmt(c, 'p999', ms)} | {fmt(c, 'status')} | {fmt(c, 'server_cpu_us_per_req', digits=1)} | "
              f"{ratio(cpu, floor_cpu)} | "
              f"{ratio(rps, base_wt) if s.id != 'wasmtime' else '1.00×' if base_wt else '—'} | "
              f"{ratio(rps, base_go)} | {ratio(rps, base_nat)} | {fmt(c, 'foreign_cpu_pct', digits=1)} |")
        w("")
        w("#### 1 connection (latency)")
        w("")
        w("| System | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx |")
        w("|---|---|---|---|---|---|")
        for s in systems:
            e = results.get(s.id, {}).get(endpoint)
            if not e:
                w(f"| {s.label} | failed | | | | |")
                continue
            c = e["c1"]
            w(f"| {s.label} | {fmt(c, 'rps')} | {fmt(c, 'p50', ms)} | {fmt(c, 'p99', ms)} | "
              f"{fmt(c, 'p999', ms)} | {fmt(c, 'status')} |")
        w("")

    if interleaved:
        cpu = interleaved["cpu"]
        labels = {s.id: s.label for s in systems}
        w("### Server CPU per request, interleaved (pinned, 32 connections)")
        w("")
        w(f"The floor, the runner's services and Go, all started at once and loaded in turn: "
          f"{interleaved['rounds']} rounds of {interleaved['duration']} s runs, forwards then "
          "backwards. Each ratio is taken within a round (runs seconds apart) and the median "
          "over rounds is shown: steadier than the ratios of the medians above. *vs floor*: "
          "CPU per request over the floor's (issue 10's goal: ≤ 1.5×). *vs Go*: requests per "
          "CPU-second over Go's for the same endpoint (goal: ≥ 1.0×).")
        w("")
        w("| System | endpoint | server CPU µs/req | vs floor | vs Go |")
        w("|---|---|---|---|---|")

        def per_round(a, b):
            pairs = round_ratios(a, b)
            if not pairs:
                return "—"
            return (f"{statistics.median(pairs):.2f}× ({min(pairs):.2f}–{max(pairs):.2f})")

        floor = cpu.get("floor/creator", [])
        for key, values in cpu.items():
            sid, endpoint = key.split("/")
            is_floor, is_go = sid == "floor", sid == "go"
            w(f"| {labels.get(sid, sid)} | {'—' if is_floor else endpoint} | "
              f"{fmt({'cpu': median_spread(values)}, 'cpu', digits=1)} | "
              f"{'1.00×' if is_floor else per_round(values, floor)} | "
              f"{'—' if is_floor else '1.00×' if is_go else per_round(cpu.get(f'go/{endpoint}', []), values)} |")
        w("")

    if unpinned:
        w("### Without CPU pinning (whole machine, 32 connections)")
        w("")
        w("The same 32-connection load with server and wrk sharing both cores, as a single host "
          "would run them; tokio gets one worker per core. Same rounds and warm-up as above.")
        w("")
        w("| System | endpoint | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | server CPU µs/req | "
          "vs `wasmtime serve` | vs Go | vs native | other CPU % |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for endpoint in ("creator", "verifier"):
            wt = get(unpinned, "wasmtime", endpoint, "c32", "rps")
            go = get(unpinned, "go", endpoint, "c32", "rps")
            nat = get(unpinned, "native", endpoint, "c32", "rps")
            for sid in UNPINNED_SYSTEMS:
                e = unpinned.get(sid, {}).get(endpoint)
                if not e or "c32" not in e:
                    continue
                c = e["c32"]
                rps = get(unpinned, sid, endpoint, "c32", "rps")
                w(f"| {unpinned[sid]['label']} | {endpoint} | {fmt(c, 'rps')} | {fmt(c, 'p50', ms)} | "
                  f"{fmt(c, 'p99', ms)} | {fmt(c, 'p999', ms)} | {fmt(c, 'status')} | "
                  f"{fmt(c, 'server_cpu_us_per_req', digits=1)} | {ratio(rps, wt)} | {ratio(rps, go)} | "
                  f"{ratio(rps, nat)} | "
                  f"{fmt(c, 'foreign_cpu_pct', digits=1)} |")
        w("")

    w("### Memory")
    w("")
    w("RSS from `/proc/PID/status`: *idle* after start-up and one `/healthz`; *end of load* "
      "(VmRSS) right after the last 32-connection round; *peak* is VmHWM at that point. MiB."
      + (" Spin: `spin up` and its trigger process summed, with both components loaded, "
         "*idle* after one `GET` on the route instead (405)."
         if cfg.spin else ""))
    w("")
    w("| System | creator idle | creator end of load | creator peak | verifier idle | "
      "verifier end of load | verifier peak |")
    w("|---|---|---|---|---|---|---|")
    for s in systems:
        cells = []
        for endpoint in ("creator", "verifier"):
            m = results.get(s.id, {}).get(endpoint, {}).get("memory", {})
            cells += [mib(m.get("idle", {}).get("VmRSS")), mib(m.get("end", {}).get("VmRSS")),
                      mib(m.get("end", {}).get("VmHWM"))]
        w(f"| {s.label} | " + " | ".join(cells) + " |")
    w("")

    w("### Start-up")
    w("")
    w("From just before `exec` (or `docker run -d`) to the first 200 from `GET /healthz`, "
      "polled every 0.5 ms by a fresh connection each time (containers: polled once `docker run -d` "
      "has returned, see `measure_container_start`); creator component; the first "
      "start of each series is a warm-up and not counted.")
    w("")
    w("| What | median ms | min–max ms | n |")
    w("|---|---|---|---|")
    for label, s in startup:
        if s is None:
            w(f"| {label} | failed | | |")
        elif "skipped" in s:
            w(f"| {label} | {s['skipped']} | | |")
        else:
            w(f"| {label} | {s['median'] * 1000:.1f} | {s['min'] * 1000:.1f}–{s['max'] * 1000:.1f} | {s['n']} |")
    for label, s in containers:
        if "skipped" in s:
            w(f"| {label} | {s['skipped']} | | |")
        elif "error" in s:
            w(f"| {label} | error: {s['error']} | | |")
        else:
            w(f"| {label} | {s['median'] * 1000:.1f} | {s['min'] * 1000:.1f}–{s['max'] * 1000:.1f} | {s['n']} |")
    w("")

    w("### Images")
    w("")
    w("| Image | size | target |")
    w("|---|---|---|")
    for image, size, target in images:
        w(f"| `{image}` | {f'{size:,} bytes ({size / 1e6:.2f} MB)' if size else 'skipped: image not built'} | ≤ {target / 1e6:.0f} MB |")
    w("")

    # Design choices of the runner.
    w("### Runner design choices")
    w("")
    w("Each row compares a runner variant with the default `runner` AOT configuration "
      "(pooling allocator, guest filesystem calls inline, access log on) measured in the same rounds.")
    w("")
    w("| Variant | endpoint | req/s (32 conn) vs default | server CPU µs/req: variant / default | p50 at 1 conn: variant / default ms |")
    w("|---|---|---|---|---|")
    for sid in ("runner-aot-musl", "runner-aot-nolog", "runner-aot-fspool", "runner-aot-nopool",
                "runner-jit"):
        s = next((x for x in systems if x.id == sid), None)
        if not s:
            continue
        for endpoint in ("creator", "verifier"):
            a = get(results, sid, endpoint, "c32", "rps")
            b = get(results, "runner-aot", endpoint, "c32", "rps")
            ca = get(results, sid, endpoint, "c32", "server_cpu_us_per_req")
            cb = get(results, "runner-aot", endpoint, "c32", "server_cpu_us_per_req")
            la = get(results, sid, endpoint, "c1", "p50")
            lb = get(results, "runner-aot", endpoint, "c1", "p50")
            delta = f"{(a / b - 1) * 100:+.1f} %" if a and b else "—"
            w(f"| {s.label} | {endpoint} | {delta} | "
              f"{f'{ca:.1f} / {cb:.1f}' if ca and cb else '—'} | "
              f"{f'{ms(la)} / {ms(lb)}' if la and lb else '—'} |")
    w("")

    # Targets.
    w("### Targets")
    w("")
    w("For the default runner configuration (AOT `.cwasm`, pooling, access log on). "
      "MB = 10⁶ bytes, MiB = 2²⁰ bytes.")
    w("")
    w("| Target | measured | result |")
    w("|---|---|---|")

    def verdict(ok):
        return "—" if ok is None else ("**met**" if ok else "**missed**")

    def ratio_row(label, a, b, bound, at_most=False, shown=None):
        ok = None if not (a and b) else (a / b <= bound if at_most else a / b >= bound)
        w(f"| {label} | {shown or ratio(a, b)} | {verdict(ok)} |")

    for endpoint in ("creator", "verifier"):
        cpu = get(results, "runner-aot", endpoint, "c32", "server_cpu_us_per_req")
        floor = get(results, "floor", endpoint, "c32", "server_cpu_us_per_req")
        medians = f"{cpu:.1f} / {floor:.1f} µs = {ratio(cpu, floor)}" if cpu and floor else None
        interleaved_cpu = (interleaved or {}).get("cpu", {})
        per_round = round_ratios(interleaved_cpu.get(f"runner-aot/{endpoint}", []),
                                 interleaved_cpu.get("floor/creator", []))
        if per_round:
            # The pinned medians of the floor and a service are taken minutes
            # apart and move 10-20 % on a shared VM; the interleaved pass
            # compares them within each round, so its median decides.
            within = statistics.median(per_round)
            w(f"| {endpoint}: server CPU per request ≤ 1.5× the floor component's "
              f"(interleaved pass, median of the rounds) | {within:.2f}× (pinned medians: "
              f"{medians or '—'}) | {verdict(within <= 1.5)} |")
        else:
            ratio_row(f"{endpoint}: server CPU per request ≤ 1.5× the floor component's", cpu,
                      floor, 1.5, at_most=True, shown=medians)
        ratio_row(f"{endpoint}: runner ≥ 2.0× `wasmtime serve` req/s",
                  get(results, "runner-aot", endpoint, "c32", "rps"),
                  get(results, "wasmtime", endpoint, "c32", "rps"), 2.0,
                  shown=None if cfg.wasmtime else "wasmtime-cli not installed")
        ratio_row(f"{endpoint}: runner ≥ 1.0× Go req/s (unpinned, both cores)",
                  get(unpinned, "runner-aot", endpoint, "c32", "rps"),
                  get(unpinned, "go", endpoint, "c32", "rps"), 1.0)
    if cfg.spin:
        # Pinned runs give each server one core: req/s there is req/s per core.
        for endpoint in ("creator", "verifier"):
            a = get(results, "runner-aot", endpoint, "c32", "rps")
            b = get(results, "spin", endpoint, "c32", "rps")
            ca = get(results, "runner-aot", endpoint, "c32", "server_cpu_us_per_req")
            cb = get(results, "spin", endpoint, "c32", "server_cpu_us_per_req")
            per_core = "per core (pinned, one core each)" if cfg.server_cpu is not None else \
                "(unpinned: both cores)"
            shown = (f"{ratio(a, b)} ({a:,.0f} / {b:,.0f} req/s; CPU µs/req "
                     f"{cb:.1f} / {ca:.1f} = {ratio(cb, ca)})" if a and b and ca and cb else None)
            ratio_row(f"{endpoint}: runner ≥ 4.0× Spin req/s {per_core}", a, b, 4.0, shown=shown)
    for endpoint in ("creator", "verifier"):
        p99 = get(results, "runner-aot", endpoint, "c32", "p99")
        w(f"| {endpoint}: p99 ≤ 5 ms at 32 connections{' (pinned: server on 1 core)' if cfg.server_cpu is not None else ''} | "
          f"{ms(p99) + ' ms' if p99 else '—'} | {verdict(p99 <= 5000 if p99 else None)} |")
        p99u = get(unpinned, "runner-aot", endpoint, "c32", "p99")
        if p99u:
            w(f"| {endpoint}: p99 ≤ 5 ms at 32 connections (unpinned) | {ms(p99u)} ms | "
              f"{verdict(p99u <= 5000)} |")
    for endpoint in ("creator", "verifier"):
        m = results.get("runner-aot", {}).get(endpoint, {}).get("memory", {}).get("end", {})
        rss = m.get("VmRSS")
        w(f"| {endpoint}: RSS ≤ 32 MB at end of load | "
          f"{f'{rss * 1024 / 1e6:.1f} MB ({rss / 1024:.1f} MiB)' if rss else '—'} | "
          f"{verdict(rss * 1024 <= 32e6 if rss else None)} |")
    # Issue 10's start-up goal: ≤ 10 ms to the first 200 with a `.cwasm`,
    # for the runner built here and for the images' static musl build.
    for label in ("runner AOT (.cwasm)", "runner AOT, static musl (image build)"):
        s = dict(startup).get(label) or {}
        start_ms = s["median"] * 1000 if "median" in s else None
        w(f"| process start → first 200 ≤ 10 ms ({label}) | "
          f"{f'{start_ms:.1f} ms' if start_ms is not None else '—'} | "
          f"{verdict(start_ms <= 10 if start_ms is not None else None)} |")
    c = dict(containers).get("container `wasm-jwt/creator:0.1.0`") or {}
    c_ms = c["median"] * 1000 if "median" in c else None
    c_txt = f"{c_ms:.1f} ms" if c_ms is not None else (c.get("skipped") or c.get("error") or "—")
    w(f"| container start → first 200 ≤ 150 ms | {c_txt} | "
      f"{verdict(c_ms <= 150 if c_ms is not None else None)} |")
    for image, size, target in images:
        w(f"| `{image}` ≤ {target / 1e6:.0f} MB | "
          f"{f'{size / 1e6:.2f} MB' if size else 'skipped: image not built'} | "
          f"{verdict(size <= target if size else None)} |")
    w("")
    if FAILURES:
        w("### Harness errors")
        w("")
        for f in FAILURES:
            w(f"- {f.splitlines()[0]}")
        w("")
    return "\n".join(L)



# --------------------------------------------------------------------------
# Token algorithms: HS256, EdDSA and ES256 side by side


ALGORITHMS = ("HS256", "EdDSA", "ES256")
ALG_SYSTEMS = ("runner", "native", "go")  # column order of the table


def algorithm_systems(cfg, alg: str) -> list[System]:
    systems = [System(f"runner-{alg}", "runner AOT (.cwasm)", "runner", "cwasm", alg=alg),
               System(f"native-{alg}", "native-server (hyper)", "native", alg=alg)]
    if cfg.go:
        systems.append(System(f"go-{alg}", "Go net/http + golang-jwt", "go", alg=alg))
    if alg == "ES256" and cfg.p256_o3_cwasm_dir:
        # The P-256 crates are built at opt-level "s" to keep the verifier
        # image within 6 MB (Cargo.toml); this measures what that costs.
        systems.append(System(f"runner-{alg}-o3", "runner AOT, P-256 crates at opt-level 3",
                              "runner", "cwasm", alg=alg, cwasm_dir=cfg.p256_o3_cwasm_dir))
    return systems


def algorithm_pass(cfg, body_dir: Path) -> dict:
    """Create and verify under each algorithm, for the runner, native-server
    and the Go baseline doing the same algorithm, in one run: 32 connections,
    pinned; throughput and server CPU per request."""
    results: dict = {}
    create_body = body_dir / "create.json"
    create_body.write_text(CREATE_BODY)
    full_duration, cfg.duration = cfg.duration, cfg.alg_duration
    try:
        for alg in ALGORITHMS:
            algorithm_endpoints(cfg, alg, body_dir, create_body, results)
    finally:
        cfg.duration = full_duration
    return results


def algorithm_endpoints(cfg, alg: str, body_dir: Path, create_body: Path, results: dict) -> None:
    """Both endpoints under one algorithm, into results[alg]."""
    systems = algorithm_systems(cfg, alg)
    token = get_token(cfg, systems, f"runner-{alg}")
    if not token:
        return
    verify_body = body_dir / f"verify-{alg}.json"
    verify_body.write_text(json.dumps({"token": token}))
    results[alg] = {}
    log(f"== token algorithm {alg}")
    bench_endpoint(cfg, systems, "creator", create_body, "/create", token, results[alg],
                   latency_runs=False)
    bench_endpoint(cfg, systems, "verifier", verify_body, "/verifier", token, results[alg],
                   latency_runs=False)


def algorithm_report(cfg, results: dict, mach: dict) -> str:
    L = []
    w = L.append
    w("## Token algorithms")
    w("")
    w(f"Generated by `scripts/bench.sh` on {mach['date']} (commit {mach['commit']}; "
      f"{mach['nproc']} × {mach['cpu']}). Each system serves tokens of the one algorithm "
      "(`TOKEN_ALG`) from the key files keycreator writes for it (the verifier's hold public "
      "keys only under EdDSA and ES256); the runner runs as the images run it. "
      f"32 connections, server pinned to one core, {cfg.alg_duration}s runs, {cfg.reps} round(s), "
      "`median (min–max)`. *per core* compares server CPU per request: 0.50× means the runner "
      "spends twice the native server's CPU on a request.")
    w("")
    w("| Algorithm | endpoint | runner req/s | runner CPU µs/req | native req/s | native CPU µs/req "
      "| Go req/s | Go CPU µs/req | runner vs native, per core | runner vs Go, per core |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for alg in ALGORITHMS:
        for endpoint in ("creator", "verifier"):
            row = [alg, endpoint]
            cpu = {}
            for kind in ALG_SYSTEMS:
                c = results.get(alg, {}).get(f"{kind}-{alg}", {}).get(endpoint, {}).get("c32")
                row += [fmt(c, "rps"), fmt(c, "server_cpu_us_per_req", digits=1)] if c else ["—", "—"]
                cpu[kind] = get(results.get(alg, {}), f"{kind}-{alg}", endpoint, "c32",
                                "server_cpu_us_per_req")
            row += [ratio(cpu["native"], cpu["runner"]), ratio(cpu["go"], cpu["runner"])]
            w("| " + " | ".join(row) + " |")
    w("")
    o3 = {e: get(results.get("ES256", {}), "runner-ES256-o3", e, "c32", "server_cpu_us_per_req")
          for e in ("creator", "verifier")}
    s_ = {e: get(results.get("ES256", {}), "runner-ES256", e, "c32", "server_cpu_us_per_req")
          for e in ("creator", "verifier")}
    if all(o3.values()) and all(s_.values()):
        w("ES256 with the P-256 crates at opt-level 3 instead of \"s\" (Cargo.toml): "
          + "; ".join(f"{e} {o3[e]:.1f} µs/req against {s_[e]:.1f} ({(s_[e] / o3[e] - 1) * 100:+.0f} %)"
                      for e in ("creator", "verifier")) + ".")
        w("")
    goal = ratio(get(results.get("EdDSA", {}), "native-EdDSA", "verifier", "c32", "server_cpu_us_per_req"),
                 get(results.get("EdDSA", {}), "runner-EdDSA", "verifier", "c32", "server_cpu_us_per_req"))
    native = get(results.get("EdDSA", {}), "native-EdDSA", "verifier", "c32", "server_cpu_us_per_req")
    runner = get(results.get("EdDSA", {}), "runner-EdDSA", "verifier", "c32", "server_cpu_us_per_req")
    met = None if not (native and runner) else native / runner >= 0.5
    verdict = "—" if met is None else ("**met**" if met else "**missed**")
    w("| Target | measured | result |")
    w("|---|---|---|")
    w(f"| EdDSA verify: runner ≥ 0.5× native-server per core | {goal} | {verdict} |")
    return "\n".join(L)


MARK_BEGIN = "<!-- generated by scripts/bench.sh: {} -->"
MARK_END = "<!-- end of what scripts/bench.sh generates: {} -->"


def write_report(out: Path, sections: list[tuple[str, str]]) -> None:
    """Put each generated section in place of the previous one, between its
    markers, leaving the rest of the file (hand-written) as it is; a section
    the file has no markers for is appended."""
    text = out.read_text() if out.is_file() else "# Benchmarks\n"
    for name, md in sections:
        begin, end = MARK_BEGIN.format(name), MARK_END.format(name)
        block = f"{begin}\n\n{md.strip()}\n\n{end}"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = head + block + rest.split(end, 1)[1]
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


# --------------------------------------------------------------------------


def spin_app(cfg) -> Path:
    """An application directory for `spin up`: the repository's spin.toml, the
    components where it expects them and a copy of the key directory, so that
    Spin's `.spin/` state and copies stay under the work directory."""
    app = Path(cfg.workdir) / "spin-app"
    shutil.rmtree(app, ignore_errors=True)
    wasm = app / "target" / "wasm32-wasip2" / "release"
    wasm.mkdir(parents=True)
    (app / "tmp").mkdir()
    shutil.copy(cfg.root / "spin.toml", app / "spin.toml")
    for name in ("creator", "verifier"):
        shutil.copy(Path(cfg.wasm_dir) / f"{name}.wasm", wasm / f"{name}.wasm")
    shutil.copytree(cfg.keydir, app / "key")
    return app


def _terminate(signum, _frame):
    # Unwind through the `finally` blocks so every server started is stopped.
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--root", required=True)
    ap.add_argument("--runner", required=True)
    ap.add_argument("--runner-musl", default="",
                    help="the runner as built for the images (static musl, no compiler)")
    ap.add_argument("--native", required=True)
    ap.add_argument("--wasmtime", default="")
    ap.add_argument("--spin", default="", help="a Spin CLI (spin up serves spin.toml)")
    ap.add_argument("--go", default="", help="the Go baseline server (scripts/bench/go-baseline)")
    ap.add_argument("--floor-cwasm", default="", help="the floor component, precompiled")
    ap.add_argument("--alg-keys", required=True,
                    help="key directories ALG/creator and ALG/verifier for EdDSA and ES256")
    ap.add_argument("--p256-o3-cwasm-dir", default="",
                    help="the components with the P-256 crates at opt-level 3, precompiled")
    ap.add_argument("--only-algorithms", action="store_true",
                    help="run only the token algorithm pass and write only its section")
    ap.add_argument("--wasm-dir", required=True)
    ap.add_argument("--cwasm-dir", required=True)
    ap.add_argument("--keydir", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pin", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--duration", type=int)
    ap.add_argument("--duration-c1", type=int)
    ap.add_argument("--reps", type=int)
    ap.add_argument("--startup-reps", type=int)
    ap.add_argument("--no-containers", action="store_true")
    ap.add_argument("--quiet-budget", type=float,
                    help="seconds the harness may wait in all for an idle machine before runs")
    ap.add_argument("--no-unpinned", action="store_true",
                    help="skip the extra unpinned 32-connection pass of the full mode")
    ap.add_argument("--only", default="", help="comma-separated system ids (debugging)")
    cfg = ap.parse_args()
    cfg.root = Path(cfg.root)
    if cfg.quick:
        defaults = dict(duration=1, duration_c1=1, reps=1, startup_reps=1, warmup=1)
    else:
        defaults = dict(duration=10, duration_c1=5, reps=3, startup_reps=10, warmup=3)
    for k, v in defaults.items():
        if getattr(cfg, k, None) is None:
            setattr(cfg, k, v)
    cfg.alg_duration = min(cfg.duration, 5)
    cfg.server_start_timeout = 180
    cfg.unpinned_pass = not cfg.quick and not cfg.no_unpinned
    # Full mode waits (at most 60 s per run, 15 min in all) for other work on
    # the machine to stop before each run; quick mode never waits.
    budget = cfg.quiet_budget if cfg.quiet_budget is not None else (0 if cfg.quick else 900)
    cfg.quiet = Quiet(budget, min(60, budget))
    ncpu = len(os.sched_getaffinity(0))
    use_pin = cfg.pin == "on" or (cfg.pin == "auto" and ncpu >= 2)
    cpus = sorted(os.sched_getaffinity(0))
    cfg.server_cpu = str(cpus[-1]) if use_pin else None
    cfg.client_cpu = str(cpus[0]) if use_pin else None
    cfg.wasmtime_version = ""
    if cfg.wasmtime:
        cfg.wasmtime_version = cmd_out([cfg.wasmtime, "--version"]).split(" (")[0].replace("wasmtime ", "")
    Path(cfg.workdir).mkdir(parents=True, exist_ok=True)
    cfg.spin_version = ""
    if cfg.spin:
        cfg.spin_version = cmd_out([cfg.spin, "--version"]).split(" (")[0].replace("spin ", "")
        cfg.spin_app = spin_app(cfg)

    cfg.collector_url = discard_collector()
    systems = all_systems(cfg)
    if cfg.only:
        keep = set(cfg.only.split(",")) | {"runner-aot"}
        systems = [s for s in systems if s.id in keep]
    mach = machine(cfg)
    out = Path(cfg.out)
    if cfg.only_algorithms:
        algorithms = algorithm_pass(cfg, Path(cfg.workdir))
        md = algorithm_report(cfg, algorithms, mach)
        write_report(out, [("token algorithms", md)])
        (Path(cfg.workdir) / "results-algorithms.json").write_text(json.dumps(
            {"machine": mach, "algorithms": algorithms, "failures": FAILURES}, indent=1, default=str))
        print(md)
        log(f"wrote {out}")
        return 1 if FAILURES else 0

    # Start-up first, while the machine is quiet.
    startup = []
    for sid, label in (("runner-aot", "runner AOT (.cwasm)"),
                       ("runner-aot-musl", "runner AOT, static musl (image build)"),
                       ("runner-jit", "runner JIT (.wasm)"),
                       ("native", "native-server"), ("wasmtime", "`wasmtime serve` (.wasm)"),
                       ("spin", "`spin up` (.wasm; to the creator's 405 on GET /create)")):
        s = next((x for x in systems if x.id == sid), None)
        if s is None:
            continue
        log(f"start-up: {label} × {cfg.startup_reps}")
        startup.append((label, measure_startup(cfg, s, cfg.startup_reps)))

    containers, images = [], []
    image_targets = [("wasm-jwt/creator:0.1.0", 6_000_000), ("wasm-jwt/verifier:0.1.0", 6_000_000),
                     ("wasm-jwt/keycreator:0.1.0", 1_000_000)]
    have_docker = not cfg.quick and not cfg.no_containers and docker_ok()
    for image, target in image_targets:
        images.append((image, image_size(image) if have_docker else None, target))
    label = "container `wasm-jwt/creator:0.1.0`"
    if cfg.quick or cfg.no_containers:
        containers.append((label, {"skipped": "skipped (quick mode)" if cfg.quick else "skipped"}))
    elif not have_docker or images[0][1] is None:
        containers.append((label, {"skipped": "skipped: image not built" if have_docker
                                   else "skipped: docker not available"}))
    else:
        log(f"container start: {images[0][0]} × {cfg.startup_reps}")
        total, docker_run = measure_container_start(cfg, images[0][0], cfg.startup_reps)
        containers.append((label, total))
        containers.append(("… of which `docker run -d` itself", docker_run))

    results: dict = {}
    unpinned: dict = {}
    interleaved: dict = {}
    body_dir = Path(cfg.workdir)
    create_body = body_dir / "create.json"
    create_body.write_text(CREATE_BODY)
    token = get_token(cfg, systems)
    if token:
        verify_body = body_dir / "verify.json"
        verify_body.write_text(json.dumps({"token": token}))
        bench_endpoint(cfg, systems, "creator", create_body, "/create", token, results)
        bench_endpoint(cfg, systems, "verifier", verify_body, "/verifier", token, results)
        if not cfg.quick and cfg.server_cpu is not None:
            log("== interleaved pass")
            bodies = {"creator": ("/create", create_body), "verifier": ("/verifier", verify_body)}
            interleaved = interleaved_pass(cfg, systems, bodies, token, rounds=10, duration=3)
        if cfg.unpinned_pass and cfg.server_cpu is not None:
            # The same load without pinning: what the whole machine does when
            # server and load generator share both cores (as in production-like
            # single-host tests). 32 connections only, a few systems.
            log("== unpinned pass")
            pinned_cpus = (cfg.server_cpu, cfg.client_cpu)
            cfg.server_cpu = cfg.client_cpu = None
            subset = [s for s in systems if s.id in UNPINNED_SYSTEMS]
            bench_endpoint(cfg, subset, "creator", create_body, "/create", token, unpinned,
                           latency_runs=False)
            bench_endpoint(cfg, subset, "verifier", verify_body, "/verifier", token, unpinned,
                           latency_runs=False)
            cfg.server_cpu, cfg.client_cpu = pinned_cpus

    algorithms = algorithm_pass(cfg, body_dir) if token else {}
    md = report(cfg, results, unpinned, interleaved, startup, containers, images, mach, systems)
    alg_md = algorithm_report(cfg, algorithms, mach)
    write_report(out, [("full run" if not cfg.quick else "quick run", md), ("token algorithms", alg_md)])
    (Path(cfg.workdir) / "results.json").write_text(json.dumps(
        {"machine": mach, "results": results, "unpinned": unpinned, "interleaved": interleaved,
         "startup": startup, "containers": containers, "algorithms": algorithms,
         "images": images, "failures": FAILURES}, indent=1, default=str))
    print(md + "\n\n" + alg_md)
    log(f"wrote {out} and {Path(cfg.workdir) / 'results.json'}")
    if FAILURES:
        log(f"{len(FAILURES)} harness error(s):")
        for f in FAILURES:
            log("  " + f.splitlines()[0])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
