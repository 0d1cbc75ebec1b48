#!/usr/bin/env python3
"""Drops by cause, as each runner reports them: 400 requests against a
collector that is down, slow (3 s > 1 s timeout), answers 500, or accepts
with an OTLP partial success rejecting 2 spans per export; then
runner_trace_spans_{exported,dropped}_total from /metrics.
usage: otel-drops.py CWASM KEYDIR NAME=BINARY...  (issue 34)"""

import json
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "runner"))
from otlp_receiver import Behaviour, Receiver  # noqa: E402

sys.path.insert(0, str(HERE))
import importlib.util  # noqa: E402
_spec = importlib.util.spec_from_file_location("otel_ab", HERE / "otel-ab.py")
_ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ab)
free_port, wait_up = _ab.free_port, _ab.wait_up
import subprocess, signal, os  # noqa: E402


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
            if l.startswith("runner_trace_spans")}


def run(binary, failure):
    receiver = Receiver()
    url = receiver.url
    if failure == "down":
        receiver.close()
    elif failure == "slow":
        receiver.behaviour = Behaviour(delay=3.0)
    elif failure == "500":
        receiver.behaviour = Behaviour(status=500)
    elif failure == "reject2":
        receiver.behaviour = Behaviour(reject=2)
    port, mport = free_port(), free_port()
    proc = subprocess.Popen([binary, "--addr", f"127.0.0.1:{port}", "--metrics-addr", f"127.0.0.1:{mport}",
                             "--dir", f"{KEYDIR}::/usr/share/key", "--env-from-file", f"SIGNING_KEY={KEYDIR / 'key.txt'}", "--no-access-log",
                             str(CWASM)],
                            env={**os.environ, "RUNNER_LOG": "error", "OTEL_EXPORTER_OTLP_ENDPOINT": url,
                                 "OTEL_BSP_SCHEDULE_DELAY": "20", "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
                                 "OTEL_BSP_MAX_QUEUE_SIZE": "64", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16"})
    try:
        wait_up(port, proc)
        slowest = 0.0
        for _ in range(400):
            t = time.monotonic()
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
            slowest = max(slowest, time.monotonic() - t)
        deadline = time.monotonic() + 12
        while True:
            m = metrics(mport)
            total = sum(m.values())
            if total >= 401 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return {"failure": failure, "slowest_request_s": round(slowest, 3), "accounted": total,
                **{k.replace("runner_trace_spans_", ""): v for k, v in m.items()}}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        receiver.close()


CWASM, KEYDIR = Path(sys.argv[1]), Path(sys.argv[2])
for arg in sys.argv[3:]:
    name, binary = arg.split("=", 1)
    for failure in ["down", "slow", "500", "reject2"]:
        print(json.dumps({"bin": name, **run(binary, failure)}), flush=True)
