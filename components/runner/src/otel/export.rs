//! The export side, from the OpenTelemetry crates: the SDK's
//! `BatchSpanProcessor` (its own thread, a bounded queue, batches) feeding
//! `opentelemetry-otlp`'s HTTP/protobuf exporter, whose requests hyper 1
//! sends (`opentelemetry-http`'s `HyperClient`) on the serving runtime.
//!
//! The SDK counts the spans its queue drops but does not expose the count
//! (it logs it at shutdown), and its OTLP exporter only logs a partial
//! success. To keep `runner_trace_spans_dropped_total` by reason, three thin
//! wrappers count around the SDK's parts:
//!
//! - [`CountingProcessor`] bounds the spans handed to the batch processor
//!   and not yet taken by its exporter at the queue size, and counts what it
//!   turns away as `queue_full` (so the SDK's own queue, the same size,
//!   never drops);
//! - [`CountingExporter`] counts each batch's outcome: `exported`, or
//!   `export_failed` (no connection, an error status, a timeout);
//! - [`CountingClient`] reads the collector's answer for an OTLP partial
//!   success and counts the refused spans as `rejected`.
//!
//! A batch that fails is dropped, not retried (`RetryPolicy::disabled`):
//! retrying would hold spans in memory while new ones queue behind them.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use prost::Message;
use tokio::runtime::Handle;

use super::config::TraceConfig;
use crate::metrics::Metrics;

/// Why spans were lost: the `reason` label of
/// `runner_trace_spans_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full: the collector is slower than the request rate.
    QueueFull,
    /// The export failed: no connection, an error status, or a timeout.
    ExportFailed,
    /// The collector took the batch but refused these spans (OTLP partial success).
    Rejected,
}

impl DropReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::ExportFailed => "export_failed",
            Self::Rejected => "rejected",
        }
    }
}

/// The tracer provider, to start with the serving runtime
/// ([`Exporter::spawn`]) and shut down with it.
pub struct Exporter {
    provider: SdkTracerProvider,
    runtime: Arc<OnceLock<Handle>>,
}

/// Stops the exporter after it has sent what is queued.
pub struct ExporterHandle {
    provider: SdkTracerProvider,
}

/// The SDK's tracer and provider for `config`, with the counting wrappers.
pub(super) fn build(config: TraceConfig, metrics: Option<Arc<Metrics>>) -> (SdkTracer, Exporter) {
    let counts = Arc::new(Counts {
        metrics,
        pending: AtomicUsize::new(0),
        rejected: AtomicU64::new(0),
        failing: AtomicBool::new(false),
        endpoint: config.endpoint.to_string(),
    });
    let runtime = Arc::new(OnceLock::new());
    let client = CountingClient {
        connection: tokio::sync::Mutex::new(None),
        timeout: config.export_timeout,
        counts: counts.clone(),
    };
    let headers = config
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect();
    let otlp = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.to_string())
        .with_timeout(config.export_timeout)
        .with_headers(headers)
        .with_retry_policy(RetryPolicy::disabled())
        .build()
        .expect("an OTLP/HTTP exporter with an http:// endpoint and a client builds");
    let exporter = CountingExporter {
        inner: Arc::new(otlp),
        counts: counts.clone(),
        runtime: runtime.clone(),
    };
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(config.max_queue)
        .with_max_export_batch_size(config.max_batch)
        .with_scheduled_delay(config.schedule_delay)
        .build();
    let processor = CountingProcessor {
        inner: BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build(),
        counts,
        max_queue: config.max_queue,
    };
    let resource = Resource::builder_empty()
        .with_attributes(
            config
                .resource
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(config.sampler.to_sdk())
        .with_resource(resource)
        .build();
    let tracer = provider.tracer_with_scope(
        InstrumentationScope::builder("runner")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    (tracer, Exporter { provider, runtime })
}

impl Exporter {
    /// Lets exports run on the current (serving) runtime: hyper's client
    /// needs one, and the batch processor's thread has none.
    pub fn spawn(self) -> ExporterHandle {
        let _ = self.runtime.set(Handle::current());
        ExporterHandle {
            provider: self.provider,
        }
    }
}

impl ExporterHandle {
    /// Sends what is queued, for at most `grace`; what is left after that
    /// is lost.
    pub async fn shutdown(self, grace: Duration) {
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(grace)).await;
        if !matches!(done, Ok(Ok(()))) {
            tracing::warn!(grace = ?grace, "spans still queued at exit were not exported in time");
        }
    }
}

/// What the wrappers count, shared between them.
struct Counts {
    metrics: Option<Arc<Metrics>>,
    /// Spans handed to the batch processor and not yet to the exporter.
    pending: AtomicUsize,
    /// Spans the collector refused in the last answer (partial success).
    rejected: AtomicU64,
    /// Whether the last export failed: failures are logged when they start
    /// and when they end, not once per batch.
    failing: AtomicBool,
    endpoint: String,
}

impl Counts {
    fn dropped(&self, reason: DropReason, spans: u64) {
        if spans > 0
            && let Some(metrics) = &self.metrics
        {
            metrics.record_spans_dropped(reason, spans);
        }
    }

    fn exported(&self, spans: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.record_spans_exported(spans);
        }
    }
}

/// The batch processor, with the queue bound counted here.
#[derive(Debug)]
struct CountingProcessor {
    inner: BatchSpanProcessor,
    counts: Arc<Counts>,
    max_queue: usize,
}

impl SpanProcessor for CountingProcessor {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.counts.pending.fetch_add(1, Ordering::Relaxed) >= self.max_queue {
            self.counts.pending.fetch_sub(1, Ordering::Relaxed);
            self.counts.dropped(DropReason::QueueFull, 1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, its outcome counted; runs each export on the serving
/// runtime.
struct CountingExporter {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    counts: Arc<Counts>,
    runtime: Arc<OnceLock<Handle>>,
}

impl fmt::Debug for CountingExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CountingExporter")
    }
}

impl fmt::Debug for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Counts")
    }
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len() as u64;
        self.counts
            .pending
            .fetch_sub(batch.len(), Ordering::Relaxed);
        let result = match self.runtime.get() {
            Some(runtime) => {
                let inner = self.inner.clone();
                runtime
                    .spawn(async move { inner.export(batch).await })
                    .await
                    .unwrap_or_else(|error| Err(OTelSdkError::InternalFailure(error.to_string())))
            }
            None => Err(OTelSdkError::InternalFailure(
                "the exporter was not started".to_owned(),
            )),
        };
        let counts = &self.counts;
        match &result {
            Ok(()) => {
                let rejected = counts.rejected.swap(0, Ordering::Relaxed).min(count);
                counts.exported(count - rejected);
                counts.dropped(DropReason::Rejected, rejected);
                if counts.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %counts.endpoint, "trace export works again");
                }
            }
            Err(error) => {
                counts.dropped(DropReason::ExportFailed, count);
                if !counts.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        endpoint = %counts.endpoint,
                        error = %error,
                        spans = count,
                        "trace export failed; dropping spans until it works again"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// The runner's own hyper 1 HTTP/1.1 client connection (kept alive),
/// reading OTLP partial successes out of the answers.
struct CountingClient {
    connection: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
    timeout: Duration,
    counts: Arc<Counts>,
}

impl fmt::Debug for CountingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CountingClient")
    }
}

/// Largest collector answer read.
const MAX_ANSWER_BYTES: usize = 64 << 10;

impl CountingClient {
    async fn send(&self, request: Request<Bytes>) -> anyhow::Result<Response<Bytes>> {
        let mut slot = self.connection.lock().await;
        let mut connection = match slot.take() {
            Some(connection) if !connection.is_closed() => connection,
            _ => connect(request.uri()).await?,
        };
        connection.ready().await?;
        let (mut parts, body) = request.into_parts();
        if let Some(authority) = parts.uri.authority().cloned() {
            parts
                .headers
                .insert(http::header::HOST, authority.as_str().parse()?);
        }
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()?;
        let response = connection
            .send_request(Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|error| anyhow::anyhow!("reading the collector's answer: {error}"))?
            .to_bytes();
        *slot = Some(connection);
        Ok(Response::from_parts(parts, body))
    }
}

async fn connect(uri: &http::Uri) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[async_trait::async_trait]
impl HttpClient for CountingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let response = match tokio::time::timeout(self.timeout, self.send(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => return Err("no answer within OTEL_EXPORTER_OTLP_TIMEOUT".into()),
        };
        if response.status().is_success() {
            let rejected = ExportTraceServiceResponse::decode(response.body().clone())
                .ok()
                .and_then(|answer| answer.partial_success)
                .map_or(0, |partial| partial.rejected_spans.max(0) as u64);
            self.counts.rejected.store(rejected, Ordering::Relaxed);
        }
        Ok(response)
    }
}
