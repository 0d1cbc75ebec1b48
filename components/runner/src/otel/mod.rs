//! OpenTelemetry traces: one server span per request, continued from the
//! caller's W3C `traceparent`, made with the OpenTelemetry SDK
//! (`opentelemetry_sdk`) and exported over OTLP/HTTP (protobuf) by
//! `opentelemetry-otlp` from the SDK's batch span processor.
//!
//! The request path starts an SDK span (the sampling decision and the IDs
//! are the SDK's) and, when the request ends, sets its name, attributes,
//! events and status and ends it; the batch processor's thread encodes and
//! sends (`export.rs`), so a slow or absent collector costs spans (counted),
//! never requests.
//!
//! What happened inside a request is recorded as span events (body read,
//! instance ready, guest answered) rather than child spans: the same
//! timings for a third of the bytes per request on the wire, and one span to
//! read in a trace view (docs/benchmarks.md, issue 23).

pub mod config;
pub mod context;
mod export;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{Method, StatusCode, Version, header};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span as SdkSpan};

pub use self::config::TraceConfig;
use self::context::RemoteParent;
pub use self::export::{DropReason, Exporter, ExporterHandle};
use crate::metrics::Metrics;
use crate::routes::{Route, Routes};

/// Makes the spans of requests; the SDK's batch processor exports them.
#[derive(Debug)]
pub struct Tracer {
    tracer: SdkTracer,
    routes: Routes,
}

/// A moment inside a request, recorded as a span event.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// The whole request body has arrived (and fits the limit).
    BodyRead,
    /// An instance slot was free and the component is instantiated.
    InstanceReady,
    /// The component has set its response (its headers; the body may
    /// still stream).
    GuestAnswered,
}

impl Phase {
    /// In the order they happen; `phase as usize` indexes arrays of them.
    const ALL: [Self; 3] = [Self::BodyRead, Self::InstanceReady, Self::GuestAnswered];

    fn name(self) -> &'static str {
        match self {
            Self::BodyRead => "request body read",
            Self::InstanceReady => "instance ready",
            Self::GuestAnswered => "guest answered",
        }
    }
}

/// Why a request failed, as the span's error status tells it.
#[derive(Debug, Clone)]
pub struct SpanError {
    /// `error.type`: a short, low-cardinality kind.
    pub kind: &'static str,
    /// The status message: what happened, for a person.
    pub message: String,
}

/// Longest error message kept on a span: a trap's message holds a Wasm
/// backtrace, and the queue's memory is bounded by span count.
const MAX_ERROR_MESSAGE: usize = 1024;

/// A request being traced.
pub struct RequestSpan {
    span: SdkSpan,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    start: Instant,
    start_time: SystemTime,
    phases: [Option<Instant>; 3],
    error: Option<SpanError>,
    request_body_size: Option<u64>,
    client: SocketAddr,
    server_address: Option<String>,
    user_agent: Option<String>,
    version: Version,
}

impl RequestSpan {
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    pub fn mark(&mut self, phase: Phase) {
        self.mark_at(phase, Instant::now());
    }

    pub fn mark_at(&mut self, phase: Phase, at: Instant) {
        self.phases[phase as usize] = Some(at);
    }

    pub fn set_request_body_size(&mut self, bytes: usize) {
        self.request_body_size = Some(bytes as u64);
    }

    /// Sets the span's status to error.
    pub fn fail(&mut self, kind: &'static str, message: impl Into<String>) {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE {
            let mut end = MAX_ERROR_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        self.error = Some(SpanError { kind, message });
    }
}

impl Tracer {
    /// The tracer and the exporter that sends what it records; the exporter
    /// must be started (`Exporter::spawn`, on the serving runtime) for spans
    /// to leave the process.
    pub fn new(config: TraceConfig, metrics: Option<Arc<Metrics>>) -> (Arc<Self>, Exporter) {
        let (tracer, exporter) = export::build(config, metrics);
        let tracer = Arc::new(Self {
            tracer,
            routes: Routes::default(),
        });
        (tracer, exporter)
    }

    /// Starts the span of a request, if it is sampled.
    pub fn start<B>(&self, request: &http::Request<B>, client: SocketAddr) -> Option<RequestSpan> {
        let parent = RemoteParent::from_headers(request.headers()).map(|parent| {
            let state = parent
                .trace_state
                .as_deref()
                .and_then(|state| TraceState::from_str(state).ok())
                .unwrap_or_default();
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(parent.trace_id),
                SpanId::from_bytes(parent.span_id),
                if parent.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                true,
                state,
            ))
        });
        let start_time = SystemTime::now();
        let builder = self
            .tracer
            .span_builder("HTTP")
            .with_kind(SpanKind::Server)
            .with_start_time(start_time);
        let span = self
            .tracer
            .build_with_context(builder, parent.as_ref().unwrap_or(&Context::new()));
        if !span.is_recording() {
            return None;
        }
        let context = span.span_context();
        let (trace_id, span_id) = (context.trace_id().to_bytes(), context.span_id().to_bytes());
        let server_address = request
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| request.headers().get(header::HOST)?.to_str().ok())
            .map(str::to_owned);
        let user_agent = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Some(RequestSpan {
            span,
            trace_id,
            span_id,
            start: Instant::now(),
            start_time,
            phases: [None; 3],
            error: None,
            request_body_size: None,
            client,
            server_address,
            user_agent,
            version: request.version(),
        })
    }

    /// Ends a request's span; the batch processor queues it for export (a
    /// full queue drops it, counted; it never waits).
    pub fn finish(
        &self,
        span: RequestSpan,
        method: Method,
        path: String,
        status: StatusCode,
        response_body_size: Option<u64>,
    ) {
        let route = match self.routes.classify(&path, status) {
            Route::Known(route) => Some(route),
            Route::Unmatched | Route::Other => None,
        };
        let end = Instant::now();
        let at = |instant: Instant| span.start_time + instant.saturating_duration_since(span.start);
        let RequestSpan {
            span: mut sdk,
            phases,
            error,
            ..
        } = span;
        let end_time = at(end);
        let events = phases.map(|phase| phase.map(at));
        let method_name = known_method(&method);
        let mut attributes = Vec::with_capacity(16);
        attributes.extend([
            KeyValue::new("http.request.method", method_name.unwrap_or("_OTHER")),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("url.path", path),
            KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            KeyValue::new("network.protocol.name", "http"),
            KeyValue::new(
                "network.protocol.version",
                if span.version == Version::HTTP_10 {
                    "1.0"
                } else {
                    "1.1"
                },
            ),
            KeyValue::new("client.address", span.client.ip().to_string()),
            KeyValue::new("client.port", i64::from(span.client.port())),
        ]);
        if method_name.is_none() {
            attributes.push(KeyValue::new(
                "http.request.method_original",
                method.as_str().to_owned(),
            ));
        }
        if let Some(route) = &route {
            attributes.push(KeyValue::new("http.route", route.to_string()));
        }
        if let Some(authority) = span
            .server_address
            .as_deref()
            .and_then(|a| a.parse::<http::uri::Authority>().ok())
        {
            attributes.push(KeyValue::new("server.address", authority.host().to_owned()));
            if let Some(port) = authority.port_u16() {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        if let Some(size) = span.request_body_size {
            attributes.push(KeyValue::new("http.request.body.size", size as i64));
        }
        if let Some(size) = response_body_size {
            attributes.push(KeyValue::new("http.response.body.size", size as i64));
        }
        if let Some(agent) = span.user_agent {
            attributes.push(KeyValue::new("user_agent.original", agent));
        }
        // A server span is an error for a 5xx, or when the runner refused or
        // failed the request (the reason says which); 4xx answers are the
        // client's errors and leave the status unset.
        match error {
            Some(error) => {
                attributes.push(KeyValue::new("error.type", error.kind));
                sdk.set_status(Status::error(error.message));
            }
            None if status.is_server_error() => {
                attributes.push(KeyValue::new("error.type", status.as_str().to_owned()));
                sdk.set_status(Status::error(""));
            }
            None => {}
        }
        let name = match (&route, method_name) {
            (Some(route), Some(method)) => format!("{method} {route}"),
            (Some(route), None) => format!("HTTP {route}"),
            (None, Some(method)) => method.to_owned(),
            (None, None) => "HTTP".to_owned(),
        };
        sdk.update_name(name);
        sdk.set_attributes(attributes);
        for phase in Phase::ALL {
            if let Some(time) = events[phase as usize] {
                sdk.add_event_with_timestamp(phase.name(), time, Vec::new());
            }
        }
        sdk.end_with_timestamp(end_time);
    }
}

/// The standard methods keep their name; others are `_OTHER`, as the HTTP
/// semantic conventions ask (a client could otherwise mint any number).
fn known_method(method: &http::Method) -> Option<&'static str> {
    use http::Method as M;
    Some(match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::PATCH => "PATCH",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => return None,
    })
}
