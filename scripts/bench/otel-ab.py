#!/usr/bin/env python3
"""A/B: CPU time per request of two runner binaries with tracing on.

For each round and each binary (order alternating A,B / B,A), start the
runner on creator.cwasm exporting to a local OTLP/HTTP receiver that counts
the spans it gets, warm up, read the runner's utime+stime from
/proc/PID/stat, drive wrk (32 connections, POST /create), wait for the
exporter to send what is queued, read utime+stime again, and divide by the
requests wrk completed. Reports per run, then median and spread.

usage: otel-ab.py --bin A=path --bin B=path --cwasm creator.cwasm --keydir DIR
                  [--ratio 1.0] [--rounds 3] [--duration 8]
KEYDIR holds key.txt (keycreator's output); needs wrk and PyPI
opentelemetry-proto. Issue 34: docs/tracing-exporter-choice.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve().parent
LUA = HERE / "post.lua"
BODY = b'{"username": "testname", "password": "pass"}'


class Counter:
    def __init__(self):
        self.spans = 0
        self.lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                n = sum(len(ss.spans) for rs in ExportTraceServiceRequest.FromString(body).resource_spans
                        for ss in rs.scope_spans)
                with counter.lock:
                    counter.spans += n
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self):
        with self.lock:
            n, self.spans = self.spans, 0
        return n


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("runner_trace_spans"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def wait_up(port, proc):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"runner exited {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return
        except Exception:
            time.sleep(0.05)
    sys.exit("runner did not come up")


def wrk(port, duration, body_file):
    env = {**os.environ, "BENCH_PATH": "/create", "BENCH_BODY_FILE": str(body_file)}
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{duration}s", "-s", str(LUA), f"http://127.0.0.1:{port}/create"],
                         env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"BENCH_RESULT requests=(\d+) .* status=(\d+)", out)
    return int(m.group(1)), int(m.group(2))


def one_run(name, binary, args, counter, body_file):
    port, mport = free_port(), free_port()
    cmd = [binary, "--addr", f"127.0.0.1:{port}", "--metrics-addr", f"127.0.0.1:{mport}",
           "--dir", f"{args.keydir}::/usr/share/key",
           "--env-from-file", f"SIGNING_KEY={Path(args.keydir) / 'key.txt'}",
           "--env", "TOKEN_TTL_SECONDS=3600", "--no-access-log",
           "--otlp-endpoint", counter.url,
           "--otel-traces-sampler", "traceidratio", "--otel-traces-sampler-arg", str(args.ratio),
           "--otel-bsp-schedule-delay", "500", str(args.cwasm)]
    proc = subprocess.Popen(cmd, env={**os.environ, "RUNNER_LOG": "warn"}, stderr=subprocess.PIPE)
    try:
        wait_up(port, proc)
        wrk(port, 2, body_file)  # warm-up
        time.sleep(1.5)
        counter.take()
        before_m = metrics(mport)
        t0 = cpu_ticks(proc.pid)
        requests, bad = wrk(port, args.duration, body_file)
        time.sleep(1.5)  # let the exporter send what is queued (delay 500 ms)
        t1 = cpu_ticks(proc.pid)
        after_m = metrics(mport)
        spans = counter.take()
        delta = {k: after_m[k] - before_m.get(k, 0) for k in after_m if after_m[k] - before_m.get(k, 0)}
        cpu_us = (t1 - t0) * 1e6 / CLK_TCK / requests
        r = {"bin": name, "requests": requests, "non2xx": bad, "cpu_s": (t1 - t0) / CLK_TCK,
             "cpu_us_per_req": round(cpu_us, 2), "spans_received": spans, "span_metrics": delta}
        print(json.dumps(r), flush=True)
        return r
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", action="append", required=True)
    p.add_argument("--cwasm", required=True)
    p.add_argument("--keydir", required=True)
    p.add_argument("--ratio", default="1.0")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=8)
    args = p.parse_args()
    bins = [b.split("=", 1) for b in args.bin]
    body_file = Path(args.keydir) / "body.json"
    body_file.write_bytes(BODY)
    counter = Counter()
    results = {name: [] for name, _ in bins}
    for rnd in range(args.rounds):
        order = bins if rnd % 2 == 0 else bins[::-1]
        for name, binary in order:
            results[name].append(one_run(name, binary, args, counter, body_file))
    for name, runs in results.items():
        v = [r["cpu_us_per_req"] for r in runs]
        print(json.dumps({"summary": name, "ratio": args.ratio, "median_us": statistics.median(v),
                          "min": min(v), "max": max(v), "runs": v,
                          "requests": [r["requests"] for r in runs]}), flush=True)


if __name__ == "__main__":
    main()
