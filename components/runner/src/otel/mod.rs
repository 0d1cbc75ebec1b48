//! OpenTelemetry traces: one server span per request, continued from the
//! caller's W3C `traceparent`, exported over OTLP/HTTP (protobuf) by a
//! background task.
//!
//! The request path does little: a sampling decision, two random IDs, a
//! handful of timestamps, and a `try_send` of the finished span's facts into
//! a bounded queue. Turning those facts into protobuf and sending them
//! happens in the exporter task (`export.rs`), so a slow or absent
//! collector costs spans (counted), never requests.
//!
//! What happened inside a request is recorded as span events (body read,
//! instance ready, guest answered) rather than child spans: the same
//! timings for a third of the bytes per request on the wire, and one span to
//! read in a trace view (docs/benchmarks.md, issue 23).

pub mod config;
pub mod context;
mod export;
mod proto;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{Method, StatusCode, Version, header};
use tokio::sync::mpsc;

pub use self::config::TraceConfig;
use self::context::{RemoteParent, Sampler, random_id};
pub use self::export::{DropReason, Exporter, ExporterHandle};
use crate::metrics::Metrics;
use crate::routes::{Route, Routes};

/// Makes the spans of requests and hands them to the exporter.
#[derive(Debug)]
pub struct Tracer {
    sampler: Sampler,
    queue: mpsc::Sender<FinishedSpan>,
    routes: Routes,
    metrics: Option<Arc<Metrics>>,
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
    facts: SpanFacts,
    start: Instant,
    phases: [Option<Instant>; 3],
}

/// What a span records while its request runs, and keeps when it ends.
struct SpanFacts {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<RemoteParent>,
    start_unix_nanos: u64,
    error: Option<SpanError>,
    request_body_size: Option<u64>,
    client: SocketAddr,
    server_address: Option<String>,
    user_agent: Option<String>,
    version: Version,
}

impl RequestSpan {
    pub fn trace_id(&self) -> [u8; 16] {
        self.facts.trace_id
    }

    pub fn span_id(&self) -> [u8; 8] {
        self.facts.span_id
    }

    pub fn mark(&mut self, phase: Phase) {
        self.mark_at(phase, Instant::now());
    }

    pub fn mark_at(&mut self, phase: Phase, at: Instant) {
        self.phases[phase as usize] = Some(at);
    }

    pub fn set_request_body_size(&mut self, bytes: usize) {
        self.facts.request_body_size = Some(bytes as u64);
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
        self.facts.error = Some(SpanError { kind, message });
    }
}

/// All the exporter needs to know of a finished request; encoded to
/// protobuf off the request path.
pub struct FinishedSpan {
    facts: SpanFacts,
    end_unix_nanos: u64,
    /// When each [`Phase`] happened, if it did.
    events: [Option<u64>; 3],
    method: Method,
    path: String,
    route: Option<Arc<str>>,
    status: StatusCode,
    response_body_size: Option<u64>,
}

impl Tracer {
    /// The tracer and the exporter that sends what it queues; the exporter
    /// must be run (`Exporter::run`) for spans to leave the process.
    pub fn new(config: TraceConfig, metrics: Option<Arc<Metrics>>) -> (Arc<Self>, Exporter) {
        let (queue, queued) = mpsc::channel(config.max_queue);
        let tracer = Arc::new(Self {
            sampler: config.sampler,
            queue,
            routes: Routes::default(),
            metrics: metrics.clone(),
        });
        (tracer, Exporter::new(config, queued, metrics))
    }

    /// Starts the span of a request, if it is sampled.
    pub fn start<B>(&self, request: &http::Request<B>, client: SocketAddr) -> Option<RequestSpan> {
        let parent = RemoteParent::from_headers(request.headers());
        let trace_id = parent.as_ref().map_or_else(random_id, |p| p.trace_id);
        if !self.sampler.sample(&trace_id, parent.as_ref()) {
            return None;
        }
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
            facts: SpanFacts {
                trace_id,
                span_id: random_id(),
                parent,
                start_unix_nanos: unix_nanos(SystemTime::now()),
                error: None,
                request_body_size: None,
                client,
                server_address,
                user_agent,
                version: request.version(),
            },
            start: Instant::now(),
            phases: [None; 3],
        })
    }

    /// Ends a request's span and queues it for export; a full queue drops
    /// it (counted), it never waits.
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
        let start_unix_nanos = span.facts.start_unix_nanos;
        let at = |instant: Instant| {
            start_unix_nanos + instant.saturating_duration_since(span.start).as_nanos() as u64
        };
        let finished = FinishedSpan {
            end_unix_nanos: at(end),
            events: span.phases.map(|phase| phase.map(at)),
            facts: span.facts,
            method,
            path,
            route,
            status,
            response_body_size,
        };
        if self.queue.try_send(finished).is_err()
            && let Some(metrics) = &self.metrics
        {
            metrics.record_spans_dropped(DropReason::QueueFull, 1);
        }
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}
