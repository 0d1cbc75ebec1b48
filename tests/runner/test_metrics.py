"""The runner's Prometheus metrics, read by an independent parser.

Starts the real runner binary with the real creator component and with the
misbehaving test guest, sends a known sequence of requests (good, bad,
oversized, stalled, trapping, looping), scrapes `--metrics-addr` and parses
the exposition with the Python Prometheus client's OpenMetrics parser: every
count must be exact.
"""

from __future__ import annotations

import http.client
import threading
import time

from runner_process import Runner


def labels(**kw) -> frozenset:
    return frozenset(kw.items())


def requests_by_labels(samples) -> dict[tuple[str, str, str], float]:
    return {
        (d["route"], d["method"], d["status"]): value
        for key, value in samples["runner_http_requests_total"].items()
        for d in [dict(key)]
    }


def test_counts_after_a_known_sequence_of_requests(binaries, cwasm, key_dir):
    runner = Runner(
        binaries["runner"],
        cwasm("creator"),
        "--dir", f"{key_dir}::/usr/share/key",
        "--max-body-bytes", "1024",
        "--body-read-timeout", "300ms",
        "--max-concurrent-requests", "4",
    )
    try:
        good = b'{"username": "testname", "password": "pass"}'
        expected = {
            ("/healthz", "GET", "200"): 1,  # the start-up probe above
            ("/create", "POST", "200"): 3,
            ("/create", "POST", "400"): 2,
            ("/create", "POST", "413"): 1,
            ("/create", "POST", "408"): 1,
            ("/create", "GET", "405"): 1,
            ("unmatched", "GET", "404"): 2,
        }
        for _ in range(3):
            assert runner.request("POST", "/create", good)[0] == 200
        assert runner.request("POST", "/create", b"{not json")[0] == 400
        assert runner.request("POST", "/create", b'{"password": "x"}')[0] == 400
        assert runner.request("POST", "/create", b"x" * 2000)[0] == 413
        assert runner.stalled_upload().startswith(b"HTTP/1.1 408 ")
        assert runner.request("GET", "/create")[0] == 405
        assert runner.request("GET", "/nope")[0] == 404
        assert runner.request("GET", "/random/scanner/path")[0] == 404

        samples = runner.samples()
        assert requests_by_labels(samples) == expected
        # Every answered request is timed, under its route.
        counts = {dict(k)["route"]: v for k, v in samples["runner_http_request_duration_seconds_count"].items()}
        assert counts == {"/healthz": 1, "/create": 8, "unmatched": 2}
        buckets = samples["runner_http_request_duration_seconds_bucket"]
        assert buckets[labels(route="/create", le="+Inf")] == 8
        assert any(dict(k)["le"] == "0.0001" for k in buckets), "sub-millisecond buckets"
        assert samples["runner_request_body_rejections_total"] == {
            labels(reason="too_large"): 1,
            labels(reason="read_timeout"): 1,
        }
        assert samples.get("runner_guest_failures_total", {}) == {}
        assert samples["runner_instances_in_use"] == {labels(): 0}
        assert samples["runner_requests_waiting"] == {labels(): 0}
        assert samples["runner_instances_max"] == {labels(): 4}
        (build,) = samples["runner_build_info"]
        build = dict(build)
        assert build["component"] == "creator.cwasm"
        assert build["wasmtime_version"] == "48.0.10"
        assert build["version"]
    finally:
        runner.stop()


def test_guest_traps_and_timeouts_are_counted(binaries, cwasm):
    runner = Runner(binaries["runner"], cwasm("misbehaving_guest"), "--request-timeout", "300ms")
    try:
        assert runner.request("GET", "/trap")[0] == 500
        assert runner.request("GET", "/trap")[0] == 500
        assert runner.request("GET", "/loop")[0] == 503
        assert runner.request("GET", "/ok")[0] == 200
        samples = runner.samples()
        assert samples["runner_guest_failures_total"] == {
            labels(reason="trap"): 2,
            labels(reason="timeout"): 1,
        }
        requests = requests_by_labels(samples)
        assert requests[("/trap", "GET", "500")] == 2
        assert requests[("/loop", "GET", "503")] == 1
        assert requests[("/ok", "GET", "200")] == 1
        assert samples["runner_instances_in_use"] == {labels(): 0}
    finally:
        runner.stop()


def test_saturation_shows_as_waiting_requests(binaries, cwasm):
    """With one instance slot and a slow request holding it, a second
    request waits, and the gauges say so while it does."""
    runner = Runner(binaries["runner"], cwasm("misbehaving_guest"), "--max-concurrent-requests", "1")
    try:
        results = []
        slow = [threading.Thread(target=lambda: results.append(runner.request("GET", "/slow?ms=1500")[0]))
                for _ in range(2)]
        for thread in slow:
            thread.start()
        deadline = time.monotonic() + 1.0
        seen = None
        while time.monotonic() < deadline:
            samples = runner.samples()
            seen = (samples["runner_instances_in_use"][labels()], samples["runner_requests_waiting"][labels()])
            if seen == (1, 1):
                break
            time.sleep(0.02)
        assert seen == (1, 1), f"(in use, waiting) = {seen}"
        for thread in slow:
            thread.join()
        assert results == [200, 200]
        samples = runner.samples()
        assert (samples["runner_instances_in_use"][labels()], samples["runner_requests_waiting"][labels()]) == (0, 0)
    finally:
        runner.stop()


def test_metrics_endpoint_answers_only_metrics(binaries, cwasm):
    runner = Runner(binaries["runner"], cwasm("misbehaving_guest"))
    try:
        connection = http.client.HTTPConnection("127.0.0.1", runner.metrics_port, timeout=10)
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 404
        assert b"not_found" in response.read()
        connection.request("POST", "/metrics", body=b"")
        response = connection.getresponse()
        assert response.status == 405
        assert response.getheader("Allow") == "GET, HEAD"
        response.read()
        connection.close()
        # The service port does not serve metrics: it is the component's alone.
        assert runner.request("GET", "/metrics")[0] == 404
    finally:
        runner.stop()
