"""The runner's OpenTelemetry traces, received by a real OTLP/HTTP receiver
that decodes them with the official protobuf definitions.

A known sequence of requests (good, bad, oversized, trapping, timing out,
continuing a caller's trace) must produce exactly the expected spans; a
collector that is down, slow or refusing must cost spans (counted), never
requests; bad configuration stops the runner with one line.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otlp_receiver import Behaviour, Receiver, attributes
from runner_process import Runner

GOOD = b'{"username": "testname", "password": "pass"}'
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
EVENTS = ["request body read", "instance ready", "guest answered"]
SAMPLED = 0x01
PARENT_IS_REMOTE = 0x300


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def traced_runner(binaries, component, receiver, *args, env=None, **kw) -> Runner:
    """A runner exporting to `receiver` through the standard variables, with
    batches sent 50 ms after their first span."""
    return Runner(binaries["runner"], component, *args,
                  env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "50",
                       **(env or {})}, **kw)


def by_path(spans) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for _, _, span in spans:
        grouped.setdefault(attributes(span.attributes)["url.path"], []).append(span)
    return grouped


def check_common(span, runner: Runner, method: str, path: str, status: int):
    attrs = attributes(span.attributes)
    assert span.kind == Span.SPAN_KIND_SERVER
    assert len(span.trace_id) == 16 and len(span.span_id) == 8
    assert span.start_time_unix_nano <= span.end_time_unix_nano
    for event in span.events:
        assert span.start_time_unix_nano <= event.time_unix_nano <= span.end_time_unix_nano
    assert attrs["http.request.method"] == method
    assert attrs["url.path"] == path
    assert attrs["url.scheme"] == "http"
    assert attrs["http.response.status_code"] == status
    assert attrs["network.protocol.name"] == "http"
    assert attrs["network.protocol.version"] == "1.1"
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == runner.port
    assert attrs["client.address"] == "127.0.0.1"
    assert isinstance(attrs["client.port"], int)
    return attrs


def test_spans_of_a_known_sequence_of_requests(binaries, cwasm, key_dir, receiver):
    runner = traced_runner(
        binaries, cwasm("creator"), receiver,
        "--dir", f"{key_dir}::/usr/share/key", "--max-body-bytes", "1024",
        env={"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test,k8s.pod.name=creator-1"},
        access_log=True,
    )
    try:
        assert runner.request("POST", "/create", GOOD, {"User-Agent": "login-gateway/2"})[0] == 200
        assert runner.request("POST", "/create", b"{not json")[0] == 400
        assert runner.request("POST", "/create", b"x" * 2000)[0] == 413
        caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "tracestate": "vendor=opaque,b=2"}
        assert runner.request("GET", "/healthz", headers=caller)[0] == 200
        # The caller did not sample this trace: parent-based sampling follows it.
        unsampled = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"}
        assert runner.request("POST", "/create", GOOD, unsampled)[0] == 200
        assert runner.request("GET", "/scanner/probe")[0] == 404

        # The start-up probe's GET /healthz is traced too: 6 spans.
        spans = receiver.wait_for_spans(6)
        time.sleep(0.3)
        spans = receiver.spans()
        assert len(spans) == 6, [s.name for _, _, s in spans]
        resource, scope, _ = spans[0]
        assert resource == {
            "service.name": "creator",
            "service.version": "0.1.0",
            "telemetry.sdk.name": "runner",
            "telemetry.sdk.language": "rust",
            "telemetry.sdk.version": "0.1.0",
            "deployment.environment.name": "test",
            "k8s.pod.name": "creator-1",
        }
        assert (scope.name, scope.version) == ("runner", "0.1.0")
        assert all(export.path == "/v1/traces" for export in receiver.exports)
        assert all(export.headers["content-type"] == "application/x-protobuf" for export in receiver.exports)

        grouped = by_path(spans)
        good, bad, oversized = grouped["/create"]
        attrs = check_common(good, runner, "POST", "/create", 200)
        assert good.name == "POST /create"
        assert attrs["http.route"] == "/create"
        assert attrs["http.request.body.size"] == len(GOOD)
        assert attrs["user_agent.original"] == "login-gateway/2"
        assert [e.name for e in good.events] == EVENTS
        assert good.status.code == Status.STATUS_CODE_UNSET
        assert good.parent_span_id == b"" and good.flags == SAMPLED

        attrs = check_common(bad, runner, "POST", "/create", 400)
        assert bad.name == "POST /create"
        # A client's error is not the server's: the status stays unset.
        assert bad.status.code == Status.STATUS_CODE_UNSET and "error.type" not in attrs
        assert [e.name for e in bad.events] == EVENTS

        attrs = check_common(oversized, runner, "POST", "/create", 413)
        assert oversized.status.code == Status.STATUS_CODE_ERROR
        assert oversized.status.message == "the request body exceeds the runner's limit of 1024 bytes"
        assert attrs["error.type"] == "body_too_large"
        assert "http.request.body.size" not in attrs
        assert list(oversized.events) == []

        probe, continued = grouped["/healthz"]
        assert probe.parent_span_id == b""
        attrs = check_common(continued, runner, "GET", "/healthz", 200)
        assert continued.name == "GET /healthz"
        assert continued.trace_id.hex() == CALLER_TRACE
        assert continued.parent_span_id.hex() == CALLER_SPAN
        assert continued.trace_state == "vendor=opaque,b=2"
        assert continued.flags == SAMPLED | PARENT_IS_REMOTE

        (unmatched,) = grouped["/scanner/probe"]
        attrs = check_common(unmatched, runner, "GET", "/scanner/probe", 404)
        # No route matched: the span is named by the method alone.
        assert unmatched.name == "GET" and "http.route" not in attrs

        # All span IDs differ; all traces but the caller's are new.
        assert len({s.span_id for _, _, s in spans}) == 6
        assert len({s.trace_id for _, _, s in spans}) == 6

        # The access line of a traced request names its trace and span.
        lines = [json.loads(line) for line in runner.log_lines() if '"target":"access"' in line]
        logged = {(line["path"], line["status"]): line for line in lines}
        assert logged[("/healthz", 200)]["trace_id"] in {CALLER_TRACE, probe.trace_id.hex()}
        assert logged[("/create", 413)]["trace_id"] == oversized.trace_id.hex()
        assert logged[("/create", 413)]["span_id"] == oversized.span_id.hex()
        untraced = [line for line in lines if "trace_id" not in line]
        assert [(line["path"], line["status"]) for line in untraced] == [("/create", 200)]

        samples = runner.samples()
        assert samples["runner_trace_spans_exported_total"] == {frozenset(): 6}
        assert samples.get("runner_trace_spans_dropped_total", {}) == {}
    finally:
        runner.stop()


def test_guest_failures_set_the_error_status(binaries, cwasm, receiver):
    runner = traced_runner(binaries, cwasm("misbehaving_guest"), receiver, "--request-timeout", "300ms")
    try:
        assert runner.request("GET", "/trap")[0] == 500
        assert runner.request("GET", "/loop")[0] == 503
        caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "tracestate": "vendor=opaque"}
        status, body = runner.request("GET", "/headers", headers=caller)
        # The guest sees the caller's trace context unchanged, to propagate it.
        assert (status, body.decode()) == (
            200, f"traceparent={caller['traceparent']}\ntracestate={caller['tracestate']}")
        spans = receiver.wait_for_spans(4)
        grouped = by_path(spans)
        (trap,) = grouped["/trap"]
        attrs = check_common(trap, runner, "GET", "/trap", 500)
        assert trap.status.code == Status.STATUS_CODE_ERROR
        assert trap.status.message.startswith("the component failed before it answered: ")
        assert attrs["error.type"] == "trap"
        assert [e.name for e in trap.events] == ["request body read"]
        (loop,) = grouped["/loop"]
        attrs = check_common(loop, runner, "GET", "/loop", 503)
        assert loop.status.code == Status.STATUS_CODE_ERROR
        assert loop.status.message == "the component did not answer within 300ms"
        assert attrs["error.type"] == "timeout"
        (headers,) = grouped["/headers"]
        assert headers.trace_id.hex() == CALLER_TRACE
        assert headers.status.code == Status.STATUS_CODE_UNSET
    finally:
        runner.stop()


def test_a_failed_instantiation_sets_the_error_status(binaries, cwasm, receiver):
    # Less memory than the component declares: no instance can be made.
    runner = traced_runner(binaries, cwasm("misbehaving_guest"), receiver,
                           "--no-pooling", "--max-memory-bytes", "65536")
    try:
        assert runner.request("GET", "/ok")[0] == 503
        spans = receiver.wait_for_spans(2)
        for _, _, span in spans:
            assert span.status.code == Status.STATUS_CODE_ERROR
            assert span.status.message.startswith("the component could not be instantiated: ")
            assert attributes(span.attributes)["error.type"] == "instantiation"
    finally:
        runner.stop()


def test_flags_mirror_the_variables_and_sampling_follows_them(binaries, cwasm, receiver):
    runner = Runner(
        binaries["runner"], cwasm("misbehaving_guest"),
        "--otlp-traces-endpoint", f"{receiver.url}/custom/path",
        "--otlp-headers", "authorization=Bearer%20s3cret",
        "--otel-service-name", "checkout",
        "--otel-traces-sampler", "parentbased_always_off",
        "--otel-bsp-schedule-delay", "50",
    )
    try:
        for _ in range(5):
            assert runner.request("GET", "/ok")[0] == 200
        caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
        assert runner.request("GET", "/ok", headers=caller)[0] == 200
        spans = receiver.wait_for_spans(1)
        time.sleep(0.3)
        spans = receiver.spans()
        # Roots are not sampled; the sampled caller's trace is.
        assert [s.trace_id.hex() for _, _, s in spans] == [CALLER_TRACE]
        assert spans[0][0]["service.name"] == "checkout"
        export = receiver.exports[0]
        assert export.path == "/custom/path"
        assert export.headers["authorization"] == "Bearer s3cret"
    finally:
        runner.stop()


def test_shutdown_sends_what_is_queued(binaries, cwasm, receiver):
    # Batches would wait a minute: only the shutdown can send these.
    runner = traced_runner(binaries, cwasm("misbehaving_guest"), receiver,
                           env={"OTEL_BSP_SCHEDULE_DELAY": "60000"})
    for _ in range(3):
        assert runner.request("GET", "/ok")[0] == 200
    assert receiver.spans() == []
    assert runner.terminate() == 0
    assert len(receiver.spans()) == 4  # and the start-up probe


@pytest.mark.parametrize("failure", ["down", "slow", "500", "429"])
def test_a_failing_collector_costs_spans_not_requests(binaries, cwasm, failure):
    receiver = Receiver()
    url = receiver.url
    if failure == "down":
        receiver.close()  # nothing listens on the port any more
    elif failure == "slow":
        receiver.behaviour = Behaviour(delay=3.0)
    else:
        receiver.behaviour = Behaviour(status=int(failure))
    runner = Runner(binaries["runner"], cwasm("misbehaving_guest"),
                    env={"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_BSP_SCHEDULE_DELAY": "20",
                         "OTEL_EXPORTER_OTLP_TIMEOUT": "1000", "OTEL_BSP_MAX_QUEUE_SIZE": "64",
                         "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16"})
    try:
        slowest = 0.0
        for _ in range(400):
            start = time.monotonic()
            assert runner.request("GET", "/ok")[0] == 200
            slowest = max(slowest, time.monotonic() - start)
        # An export waits up to a second on this collector; no request does.
        assert slowest < 0.5, f"a request took {slowest:.3f} s"
        # Every span is accounted for: none exported, all dropped, by reason.
        deadline = time.monotonic() + 10
        while True:
            samples = runner.samples()
            dropped = {dict(k)["reason"]: v for k, v in samples.get("runner_trace_spans_dropped_total", {}).items()}
            if sum(dropped.values()) == 401 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert samples["runner_trace_spans_exported_total"] == {frozenset(): 0}
        assert sum(dropped.values()) == 401, dropped
        assert dropped.get("export_failed", 0) > 0
        if failure == "slow":
            assert dropped.get("queue_full", 0) > 0, dropped
    finally:
        runner.stop()
        receiver.close()


def test_memory_stays_bounded_while_the_collector_is_down(binaries, cwasm):
    receiver = Receiver()
    receiver.close()
    runner = Runner(binaries["runner"], cwasm("misbehaving_guest"),
                    env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "1000"})
    try:
        for _ in range(2000):
            runner.request("GET", "/ok")
        warm = runner.rss_kib()
        for _ in range(6000):
            runner.request("GET", "/ok")
        grown = runner.rss_kib() - warm
        # The queue holds at most 2048 spans of a few hundred bytes each.
        assert grown < 4096, f"RSS grew by {grown} KiB after 6000 more requests"
    finally:
        runner.stop()


@pytest.mark.parametrize("env, expected", [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "is not a URL"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "sometimes"},
     "is not a sampler the runner knows"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "traceidratio",
      "OTEL_TRACES_SAMPLER_ARG": "1.5"}, "is not a ratio from 0 to 1"),
])
def test_bad_configuration_is_one_line_and_a_failed_start(binaries, cwasm, env, expected):
    import os
    result = subprocess.run([binaries["runner"], "--addr", "127.0.0.1:0", cwasm("misbehaving_guest")],
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("runner: ") and expected in lines[0], result.stderr
