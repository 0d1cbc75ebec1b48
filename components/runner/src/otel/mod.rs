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
mod span;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, StatusCode, header};
use tokio::sync::mpsc;

pub use self::config::TraceConfig;
use self::context::{RemoteParent, Sampler, random_id};
pub use self::export::{Exporter, ExporterHandle};
use self::span::{FinishedSpan, SpanFacts};
pub use self::span::{Phase, RequestSpan, SpanError};
use crate::metrics::{Metrics, SpanDropReason};
use crate::routes::{Route, Routes};

/// Makes the spans of requests and hands them to the exporter.
#[derive(Debug)]
pub struct Tracer {
    sampler: Sampler,
    queue: mpsc::Sender<FinishedSpan>,
    routes: Routes,
    metrics: Option<Arc<Metrics>>,
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
        Some(RequestSpan::start(SpanFacts {
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
        }))
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
        let finished = span.end(method, path, route, status, response_body_size);
        if self.queue.try_send(finished).is_err()
            && let Some(metrics) = &self.metrics
        {
            metrics.record_spans_dropped(SpanDropReason::QueueFull, 1);
        }
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}
