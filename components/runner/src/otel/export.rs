//! The exporter: batches queued spans and POSTs them to the collector as
//! OTLP/HTTP protobuf, one request at a time, on a kept-alive connection.
//!
//! Bounded everywhere: the queue (`OTEL_BSP_MAX_QUEUE_SIZE`), a batch
//! (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`), an export's time
//! (`OTEL_EXPORTER_OTLP_TIMEOUT`) and the collector's answer. A batch that
//! fails is dropped, not retried: retrying would hold spans in memory while
//! new ones queue behind them, and a trace backend that was down has lost
//! the moment anyway. Drops are counted by reason.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{HeaderValue, Request, Version, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::config::TraceConfig;
use super::proto::{self, KeyValue};
use super::{FinishedSpan, Phase};
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

/// Largest collector answer read: an `ExportTraceServiceResponse` is a few
/// bytes; an error page is not worth more.
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// Sends the spans the tracer queues; see [`Exporter::run`].
pub struct Exporter {
    config: TraceConfig,
    queued: mpsc::Receiver<FinishedSpan>,
    metrics: Option<Arc<Metrics>>,
    /// The resource and scope, the same in every export.
    resource: proto::Resource,
    connection: Option<SendRequest<Full<Bytes>>>,
    /// Whether the last export failed: failures are logged when they start
    /// and when they end, not once per batch.
    failing: bool,
}

/// Stops a running exporter after it has sent what is queued.
pub struct ExporterHandle {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    pub(super) fn new(
        config: TraceConfig,
        queued: mpsc::Receiver<FinishedSpan>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        let resource = proto::Resource {
            attributes: config
                .resource
                .iter()
                .map(|(key, value)| KeyValue::string(key, value.as_str()))
                .collect(),
        };
        Self {
            config,
            queued,
            metrics,
            resource,
            connection: None,
            failing: false,
        }
    }

    /// Runs the exporter as a task of the current runtime.
    pub fn spawn(self) -> ExporterHandle {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(self.run(stopped));
        ExporterHandle { stop, task }
    }

    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let max_batch = self.config.max_batch;
        let mut batch = Vec::with_capacity(max_batch);
        let mut stopping = false;
        while !stopping {
            // Wait for a first span, then for a full batch or the delay.
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                received = self.queued.recv_many(&mut batch, max_batch) => {
                    if received == 0 {
                        break;
                    }
                }
            }
            let due = Instant::now() + self.config.schedule_delay;
            while batch.len() < max_batch {
                let room = max_batch - batch.len();
                tokio::select! {
                    biased;
                    _ = &mut stopped => {
                        stopping = true;
                        break;
                    }
                    () = tokio::time::sleep_until(due) => break,
                    received = self.queued.recv_many(&mut batch, room) => {
                        if received == 0 {
                            break;
                        }
                    }
                }
            }
            self.export(&mut batch).await;
        }
        // Shutting down: send what is still queued; the caller bounds how
        // long this may take.
        self.queued.close();
        while self.queued.recv_many(&mut batch, max_batch).await > 0 {
            self.export(&mut batch).await;
        }
    }

    /// Sends one batch (and empties it); counts what was lost.
    async fn export(&mut self, batch: &mut Vec<FinishedSpan>) {
        let count = batch.len() as u64;
        let body = encode(&self.resource, batch.drain(..));
        let sent = tokio::time::timeout(self.config.export_timeout, self.send(body)).await;
        let outcome = match sent {
            Ok(Ok(rejected)) => Ok(rejected),
            Ok(Err(error)) => Err(format!("{error:#}")),
            Err(_elapsed) => Err(format!(
                "no answer within {:?} (OTEL_EXPORTER_OTLP_TIMEOUT)",
                self.config.export_timeout
            )),
        };
        match outcome {
            Ok(rejected) => {
                let rejected = rejected.min(count);
                self.count_exported(count - rejected);
                self.count_dropped(DropReason::Rejected, rejected);
                if self.failing {
                    tracing::info!(endpoint = %self.config.endpoint, "trace export works again");
                    self.failing = false;
                }
            }
            Err(error) => {
                // The connection may be in any state now: start afresh.
                self.connection = None;
                self.count_dropped(DropReason::ExportFailed, count);
                if !self.failing {
                    tracing::warn!(
                        endpoint = %self.config.endpoint,
                        error,
                        spans = count,
                        "trace export failed; dropping spans until it works again"
                    );
                    self.failing = true;
                }
            }
        }
    }

    /// POSTs one export request; returns how many spans the collector
    /// rejected.
    async fn send(&mut self, body: Vec<u8>) -> Result<u64> {
        let mut connection = match self.connection.take() {
            Some(connection) if !connection.is_closed() => connection,
            _ => self.connect().await?,
        };
        connection.ready().await?;
        let endpoint = &self.config.endpoint;
        let mut request = Request::post(endpoint.path_and_query().map_or("/", |p| p.as_str()))
            .version(Version::HTTP_11)
            .header(
                header::HOST,
                endpoint.authority().map_or("", |a| a.as_str()),
            )
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )
            .body(Full::new(Bytes::from(body)))?;
        for (name, value) in &self.config.headers {
            request.headers_mut().append(name, value.clone());
        }
        let response = connection.send_request(request).await?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|error| anyhow::anyhow!("reading the collector's answer: {error}"))?
            .to_bytes();
        self.connection = Some(connection);
        if !status.is_success() {
            bail!("the collector answered {status}");
        }
        // OTLP/HTTP: a 200 may carry a partial success, naming spans it
        // refused; an empty or undecodable body is full success.
        let rejected = proto::ExportTraceServiceResponse::decode(answer)
            .ok()
            .and_then(|answer| answer.partial_success)
            .map_or(0, |partial| partial.rejected_spans.max(0) as u64);
        Ok(rejected)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let endpoint = &self.config.endpoint;
        let host = endpoint.host().unwrap_or_default();
        // `[::1]` in a URL is `::1` to connect to.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = endpoint.port_u16().unwrap_or(80);
        let stream = TcpStream::connect((host, port))
            .await
            .with_context(|| format!("cannot connect to {host}:{port}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "collector connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn count_exported(&self, spans: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.record_spans_exported(spans);
        }
    }

    fn count_dropped(&self, reason: DropReason, spans: u64) {
        if spans > 0
            && let Some(metrics) = &self.metrics
        {
            metrics.record_spans_dropped(reason, spans);
        }
    }
}

impl ExporterHandle {
    /// Sends what is queued, for at most `grace`; what is left after that
    /// is lost.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
            tracing::warn!(grace = ?grace, "spans still queued at exit were not exported in time");
        }
    }
}

/// One `ExportTraceServiceRequest` holding `spans`.
fn encode(resource: &proto::Resource, spans: impl Iterator<Item = FinishedSpan>) -> Vec<u8> {
    let request = proto::ExportTraceServiceRequest {
        resource_spans: vec![proto::ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![proto::ScopeSpans {
                scope: Some(proto::InstrumentationScope {
                    name: "runner".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                }),
                spans: spans.map(to_proto).collect(),
            }],
        }],
    };
    request.encode_to_vec()
}

/// W3C trace flags: sampled (only sampled spans are exported).
const SAMPLED: u32 = 0x01;
/// OTLP span flags: whether the parent is remote is known (bit 8), and it
/// is (bit 9): the parent is always the caller's span.
const PARENT_IS_REMOTE: u32 = 0x100 | 0x200;

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

/// A span with the HTTP server semantic conventions' attributes
/// (https://opentelemetry.io/docs/specs/semconv/http/http-spans/).
fn to_proto(span: FinishedSpan) -> proto::Span {
    let facts = span.facts;
    let method = known_method(&span.method);
    let mut attributes = vec![
        KeyValue::string("http.request.method", method.unwrap_or("_OTHER")),
        KeyValue::string("url.scheme", "http"),
        KeyValue::string("url.path", span.path),
        KeyValue::int("http.response.status_code", i64::from(span.status.as_u16())),
        KeyValue::string("network.protocol.name", "http"),
        KeyValue::string(
            "network.protocol.version",
            if facts.version == Version::HTTP_10 {
                "1.0"
            } else {
                "1.1"
            },
        ),
        KeyValue::string("client.address", facts.client.ip().to_string()),
        KeyValue::int("client.port", i64::from(facts.client.port())),
    ];
    if method.is_none() {
        attributes.push(KeyValue::string(
            "http.request.method_original",
            span.method.as_str(),
        ));
    }
    if let Some(route) = &span.route {
        attributes.push(KeyValue::string("http.route", route.as_ref()));
    }
    if let Some(authority) = facts
        .server_address
        .as_deref()
        .and_then(|a| a.parse::<http::uri::Authority>().ok())
    {
        attributes.push(KeyValue::string("server.address", authority.host()));
        if let Some(port) = authority.port_u16() {
            attributes.push(KeyValue::int("server.port", i64::from(port)));
        }
    }
    if let Some(size) = facts.request_body_size {
        attributes.push(KeyValue::int("http.request.body.size", size as i64));
    }
    if let Some(size) = span.response_body_size {
        attributes.push(KeyValue::int("http.response.body.size", size as i64));
    }
    if let Some(agent) = facts.user_agent {
        attributes.push(KeyValue::string("user_agent.original", agent));
    }
    // A server span is an error for a 5xx, or when the runner refused or
    // failed the request (the reason says which); 4xx answers are the
    // client's errors and leave the status unset.
    let status = match facts.error {
        Some(error) => {
            attributes.push(KeyValue::string("error.type", error.kind));
            Some(proto::Status {
                message: error.message,
                code: proto::StatusCode::Error as i32,
            })
        }
        None if span.status.is_server_error() => {
            attributes.push(KeyValue::string("error.type", span.status.as_str()));
            Some(proto::Status {
                message: String::new(),
                code: proto::StatusCode::Error as i32,
            })
        }
        None => None,
    };
    let name = match (&span.route, method) {
        (Some(route), Some(method)) => format!("{method} {route}"),
        (Some(route), None) => format!("HTTP {route}"),
        (None, Some(method)) => method.to_owned(),
        (None, None) => "HTTP".to_owned(),
    };
    let events = Phase::ALL
        .iter()
        .filter_map(|phase| {
            Some(proto::Event {
                time_unix_nano: span.events[*phase as usize]?,
                name: phase.name().to_owned(),
            })
        })
        .collect();
    let (parent_span_id, trace_state, flags) = match facts.parent {
        Some(parent) => (
            parent.span_id.to_vec(),
            parent.trace_state.unwrap_or_default(),
            SAMPLED | PARENT_IS_REMOTE,
        ),
        None => (Vec::new(), String::new(), SAMPLED),
    };
    proto::Span {
        trace_id: facts.trace_id.to_vec(),
        span_id: facts.span_id.to_vec(),
        trace_state,
        parent_span_id,
        name,
        kind: proto::SpanKind::Server as i32,
        start_time_unix_nano: facts.start_unix_nanos,
        end_time_unix_nano: span.end_unix_nanos,
        attributes,
        events,
        status,
        flags,
    }
}
