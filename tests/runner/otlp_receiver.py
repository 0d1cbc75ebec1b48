"""A real OTLP/HTTP trace receiver for the tests: it decodes what it gets
with the official protobuf definitions (PyPI `opentelemetry-proto`), and
can be told to answer slowly, with an error status, or with a partial
success, as collectors do."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass
class Export:
    path: str
    headers: dict[str, str]
    request: ExportTraceServiceRequest


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0
    reject: int = 0


@dataclass
class Receiver:
    """Listens on `host`, port chosen by the system; `url` is its base."""

    host: str = "127.0.0.1"
    behaviour: Behaviour = field(default_factory=Behaviour)
    exports: list[Export] = field(default_factory=list)

    def __post_init__(self):
        receiver = self
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                behaviour = receiver.behaviour
                if behaviour.delay:
                    time.sleep(behaviour.delay)
                answer = b""
                if behaviour.status == 200:
                    request = ExportTraceServiceRequest.FromString(body)
                    with receiver.lock:
                        receiver.exports.append(Export(self.path, {k.lower(): v for k, v in self.headers.items()}, request))
                    partial = ExportTracePartialSuccess(rejected_spans=behaviour.reject,
                                                        error_message="over quota" if behaviour.reject else "")
                    answer = ExportTraceServiceResponse(partial_success=partial).SerializeToString()
                self.send_response(behaviour.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list:
        """(resource attributes, scope, span) for every span received, in order."""
        with self.lock:
            exports = list(self.exports)
        found = []
        for export in exports:
            for resource_spans in export.request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append((resource, scope_spans.scope, span))
        return found

    def wait_for_spans(self, count: int, timeout: float = 10) -> list:
        deadline = time.monotonic() + timeout
        while len(spans := self.spans()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return spans

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def attributes(key_values) -> dict:
    """OTLP KeyValues as a dict of Python values (the kinds the runner sends)."""
    result = {}
    for kv in key_values:
        kind = kv.value.WhichOneof("value")
        result[kv.key] = getattr(kv.value, kind)
    return result
