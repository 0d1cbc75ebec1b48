//! Prometheus metrics (OpenMetrics text format), served on their own address
//! (`--metrics-addr`) so that the service port stays the API alone.
//!
//! Collection is off unless that flag is given: the server and the host hold
//! an `Option<Arc<Metrics>>`, so a runner without it does no metrics work.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::routes::{Route, Routes};

/// The wasmtime this runner is built with (pinned with `=` in Cargo.toml;
/// a test keeps the two in step).
pub const WASMTIME_VERSION: &str = "48.0.10";

/// Upper bounds of the latency buckets, in seconds. A request to the token
/// services takes ~0.1-0.3 ms on an idle runner, so the low end resolves
/// tenths of a millisecond; the top reaches the default request timeout.
const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// The route label of requests the component answered 404.
const UNMATCHED_ROUTE: &str = "unmatched";
/// The route label of paths beyond [`crate::routes::MAX_ROUTES`].
const OTHER_ROUTE: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    wasmtime_version: &'static str,
    component: String,
}

/// Why a request failed inside the component (or could not reach it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFailure {
    /// The component trapped or failed before it answered (500).
    Trap,
    /// The component missed the request deadline (503).
    Timeout,
    /// No instance could be created for the request (503).
    Instantiation,
}

impl GuestFailure {
    fn label(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::Instantiation => "instantiation",
        }
    }
}

/// Why the runner refused a request body before the component saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRejection {
    /// Over `--max-body-bytes` (413).
    TooLarge,
    /// Not complete within `--body-read-timeout` (408).
    ReadTimeout,
    /// The connection failed mid-body, or the framing was broken (400).
    ReadError,
}

impl BodyRejection {
    fn label(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::ReadTimeout => "read_timeout",
            Self::ReadError => "read_error",
        }
    }
}

/// Why spans were lost: the `reason` label of
/// `runner_trace_spans_dropped_total`. Defined here, beside the other
/// reasons counted, so that the metrics need nothing of the tracer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanDropReason {
    /// The queue was full: the collector is slower than the request rate.
    QueueFull,
    /// The export failed: no connection, an error status, or a timeout.
    ExportFailed,
    /// The collector took the batch but refused these spans (OTLP partial success).
    Rejected,
}

impl SpanDropReason {
    fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::ExportFailed => "export_failed",
            Self::Rejected => "rejected",
        }
    }
}

/// Everything the runner counts.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    instances_in_use: Gauge,
    requests_waiting: Gauge,
    guest_failures: Family<ReasonLabels, Counter>,
    body_rejections: Family<ReasonLabels, Counter>,
    routes: Routes,
    spans_exported: Counter,
    spans_dropped: Family<ReasonLabels, Counter>,
    unmatched_route: Arc<str>,
    other_route: Arc<str>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    /// `component` is reported in `runner_build_info`; `max_instances` in
    /// `runner_instances_max`.
    pub fn new(component: &str, max_instances: u32) -> Self {
        let mut registry = Registry::with_prefix("runner");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        let durations: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from the request's arrival to its response headers, by route",
            durations.clone(),
        );
        let instances_in_use = Gauge::default();
        registry.register(
            "instances_in_use",
            "Component instances alive now (each serves one request)",
            instances_in_use.clone(),
        );
        let requests_waiting = Gauge::default();
        registry.register(
            "requests_waiting",
            "Requests waiting for a free instance slot (the pool is saturated while > 0)",
            requests_waiting.clone(),
        );
        let instances_max = Gauge::<i64>::default();
        instances_max.set(i64::from(max_instances));
        registry.register(
            "instances_max",
            "Instances that may be alive at once (--max-concurrent-requests)",
            instances_max,
        );
        let guest_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "guest_failures",
            "Requests the component did not answer: trap, timeout or instantiation",
            guest_failures.clone(),
        );
        let body_rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "request_body_rejections",
            "Request bodies refused before the component ran: too_large, read_timeout, read_error",
            body_rejections.clone(),
        );
        let spans_exported = Counter::default();
        registry.register(
            "trace_spans_exported",
            "Spans the trace collector accepted (OpenTelemetry tracing)",
            spans_exported.clone(),
        );
        let spans_dropped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "trace_spans_dropped",
            "Spans lost: queue_full (the collector is too slow), export_failed, rejected by the collector",
            spans_dropped.clone(),
        );
        registry.register(
            "build",
            "The runner's version, its wasmtime and the component it serves",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                wasmtime_version: WASMTIME_VERSION,
                component: component.to_owned(),
            }),
        );
        Self {
            registry,
            requests,
            durations,
            instances_in_use,
            requests_waiting,
            guest_failures,
            body_rejections,
            routes: Routes::default(),
            spans_exported,
            spans_dropped,
            unmatched_route: UNMATCHED_ROUTE.into(),
            other_route: OTHER_ROUTE.into(),
        }
    }

    /// Counts one answered request and its latency.
    pub fn record_request(&self, method: &Method, path: &str, status: StatusCode, took: Duration) {
        let route = self.route_label(path, status);
        self.durations
            .get_or_create(&RouteLabels {
                route: Arc::clone(&route),
            })
            .observe(took.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method: method_label(method),
                status: status.as_u16(),
            })
            .inc();
    }

    pub fn record_guest_failure(&self, failure: GuestFailure) {
        self.guest_failures
            .get_or_create(&ReasonLabels {
                reason: failure.label(),
            })
            .inc();
    }

    pub fn record_body_rejection(&self, rejection: BodyRejection) {
        self.body_rejections
            .get_or_create(&ReasonLabels {
                reason: rejection.label(),
            })
            .inc();
    }

    pub fn record_spans_exported(&self, spans: u64) {
        self.spans_exported.inc_by(spans);
    }

    pub fn record_spans_dropped(&self, reason: SpanDropReason, spans: u64) {
        self.spans_dropped
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc_by(spans);
    }

    /// Marks a request as waiting for an instance slot until the guard drops.
    pub fn waiting_for_instance(&self) -> GaugeGuard {
        GaugeGuard::new(&self.requests_waiting)
    }

    /// Marks an instance as alive until the guard drops.
    pub fn instance_in_use(&self) -> GaugeGuard {
        GaugeGuard::new(&self.instances_in_use)
    }

    /// The route label for `path`: itself while it is one of the first
    /// routes seen, `unmatched` for a 404, `other` beyond the cap.
    fn route_label(&self, path: &str, status: StatusCode) -> Arc<str> {
        match self.routes.classify(path, status) {
            Route::Known(route) => route,
            Route::Unmatched => Arc::clone(&self.unmatched_route),
            Route::Other => Arc::clone(&self.other_route),
        }
    }

    /// The whole exposition, `# EOF` included.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Only the standard methods are labelled by name: the method is client
/// input, and an extension method per request would be a new series each.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Increments a gauge now and decrements it when dropped, so the gauge is
/// right even when the request's future is cancelled half-way.
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `listener` until the runtime shuts down.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                tracing::warn!(error = %error, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |request| {
                    let response = answer(&metrics, request.method(), request.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                }),
            );
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "metrics connection ended with an error");
            }
        });
    }
}

fn answer(metrics: &Metrics, method: &Method, path: &str) -> hyper::Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            (StatusCode::OK, OPENMETRICS, metrics.encode())
        }
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            r#"{"error":"method_not_allowed","detail":"use GET /metrics"}"#.to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"error":"not_found","detail":"metrics are at /metrics"}"#.to_owned(),
        ),
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}

/// Binds the metrics address; a failure names it.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasmtime_version_matches_the_lockfile() {
        let lock = include_str!("../../../Cargo.lock");
        let pinned = format!("name = \"wasmtime\"\nversion = \"{WASMTIME_VERSION}\"");
        assert!(lock.contains(&pinned), "Cargo.lock has no {pinned:?}");
    }

    #[test]
    fn route_labels_name_unmatched_and_other_routes() {
        let metrics = Metrics::new("c.cwasm", 4);
        assert_eq!(
            &*metrics.route_label("/nope", StatusCode::NOT_FOUND),
            "unmatched"
        );
        for i in 0..crate::routes::MAX_ROUTES {
            metrics.route_label(&format!("/r{i}"), StatusCode::OK);
        }
        assert_eq!(&*metrics.route_label("/one-more", StatusCode::OK), "other");
        assert_eq!(&*metrics.route_label("/r0", StatusCode::OK), "/r0");
    }

    #[test]
    fn exposition_counts_what_was_recorded() {
        let metrics = Metrics::new("creator.cwasm", 8);
        let took = Duration::from_micros(300);
        metrics.record_request(&Method::POST, "/create", StatusCode::OK, took);
        metrics.record_request(&Method::POST, "/create", StatusCode::OK, took);
        metrics.record_request(
            &Method::from_bytes(b"BREW").unwrap(),
            "/x",
            StatusCode::NOT_FOUND,
            took,
        );
        metrics.record_guest_failure(GuestFailure::Trap);
        metrics.record_body_rejection(BodyRejection::TooLarge);
        let waiting = metrics.waiting_for_instance();
        let text = metrics.encode();
        for line in [
            r#"runner_http_requests_total{route="/create",method="POST",status="200"} 2"#,
            r#"runner_http_requests_total{route="unmatched",method="other",status="404"} 1"#,
            r#"runner_http_request_duration_seconds_bucket{le="0.0005",route="/create"} 2"#,
            r#"runner_http_request_duration_seconds_bucket{le="0.00025",route="/create"} 0"#,
            r#"runner_guest_failures_total{reason="trap"} 1"#,
            r#"runner_request_body_rejections_total{reason="too_large"} 1"#,
            "runner_requests_waiting 1",
            "runner_instances_max 8",
            r#"runner_build_info{version="0.1.0",wasmtime_version="48.0.10",component="creator.cwasm"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        drop(waiting);
        assert!(
            metrics
                .encode()
                .lines()
                .any(|l| l == "runner_requests_waiting 0")
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
