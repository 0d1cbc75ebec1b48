//! The HTTP front: accepts connections, enforces the body limit, hands each
//! request to the component, logs it, and drains on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, Version, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use wasmtime_wasi_http::WasiBody;

use crate::access_log;
use crate::host::{GuestError, Host};
use crate::metrics::{BodyRejection, GuestFailure, Metrics};
use crate::otel::{Phase, RequestSpan, Tracer};

/// Limits and timeouts of the HTTP front.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Larger request bodies are refused with 413 before the guest runs.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// Reported in the 503 body when a request times out.
    pub request_timeout: Duration,
    /// The whole request body must arrive within this long, else 408.
    pub body_read_timeout: Duration,
    /// Write one JSON line per request to stdout.
    pub access_log: bool,
    /// Where requests are counted, if `--metrics-addr` is set.
    pub metrics: Option<Arc<Metrics>>,
    /// Where requests' spans go, if tracing is on.
    pub tracer: Option<Arc<Tracer>>,
}

/// Clients get this long to send their request headers (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

struct Server {
    host: Host,
    options: ServerOptions,
    /// The authority given to HTTP/1.0 requests that name none: the
    /// address this server listens on.
    listen_authority: HeaderValue,
    connections: AtomicU64,
}

/// Serves `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    host: Host,
    options: ServerOptions,
    shutdown: impl Future<Output = &'static str>,
) -> Result<()> {
    let listen_authority = HeaderValue::try_from(listener.local_addr()?.to_string())?;
    let server = Arc::new(Server {
        host,
        options,
        listen_authority,
        connections: AtomicU64::new(0),
    });
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    let signal = loop {
        let (stream, peer) = tokio::select! {
            signal = &mut shutdown => break signal,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Responses are small and written at once; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        server.connections.fetch_add(1, Ordering::Relaxed);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            // A client may send its whole request and then shut down its
            // sending side (`nc -N`, some HTTP/1.0 tools). Without this,
            // hyper takes that EOF for a disconnect and drops the request
            // being served, and the client never gets its response.
            .half_close(true)
            .serve_connection(
                TokioIo::new(stream),
                service_fn({
                    let server = server.clone();
                    move |request| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.respond(request, peer).await) }
                    }
                }),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "connection ended with an error");
            }
        });
    };

    // Stop accepting at once; let requests in flight finish.
    drop(listener);
    let timeout = server.options.shutdown_timeout;
    tracing::info!(signal, timeout = ?timeout, "shutting down: draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained; exiting"),
        () = tokio::time::sleep(timeout) => {
            tracing::warn!("drain timed out; closing remaining connections");
        }
    }
    Ok(())
}

impl Server {
    async fn respond(
        &self,
        request: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> hyper::Response<WasiBody> {
        let start = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let tracer = self.options.tracer.as_deref();
        let mut span = tracer.and_then(|tracer| tracer.start(&request, peer));
        let response = self.call_guest(request, span.as_mut()).await;
        let took = start.elapsed();
        if let Some(metrics) = &self.options.metrics {
            metrics.record_request(&method, &path, response.status(), took);
        }
        if self.options.access_log {
            let ids = span.as_ref().map(|span| (span.trace_id(), span.span_id()));
            access_log::write(
                method.as_str(),
                &path,
                response.status().as_u16(),
                took,
                ids,
            );
        }
        if let (Some(tracer), Some(span)) = (tracer, span) {
            let body_size = response.body().size_hint().exact();
            tracer.finish(span, method, path, response.status(), body_size);
        }
        response
    }

    async fn call_guest(
        &self,
        request: hyper::Request<Incoming>,
        mut span: Option<&mut RequestSpan>,
    ) -> hyper::Response<WasiBody> {
        let limit = self.options.max_body_bytes;
        let (mut parts, body) = request.into_parts();
        let declared_too_large =
            declared_length(&parts.headers).is_some_and(|length| length > limit as u64);
        // Buffer the (small) body before the guest runs: an oversized or
        // broken upload is then a clean 413/400 from us, never a guest error.
        let timeout = self.options.body_read_timeout;
        let read = tokio::time::timeout(timeout, read_body(body, limit, declared_too_large)).await;
        let body = match read {
            Ok(Ok(body)) => body,
            Ok(Err(BodyError::TooLarge)) => {
                self.count_body_rejection(BodyRejection::TooLarge);
                if let Some(span) = span {
                    span.fail(
                        "body_too_large",
                        format!("the request body exceeds the runner's limit of {limit} bytes"),
                    );
                }
                return too_large(limit);
            }
            Ok(Err(BodyError::Read(error))) => {
                self.count_body_rejection(BodyRejection::ReadError);
                let detail = format!("could not read the request body: {error}");
                if let Some(span) = span {
                    span.fail("body_read_error", detail.clone());
                }
                return error_response(StatusCode::BAD_REQUEST, "bad_request", &detail);
            }
            Err(_elapsed) => {
                self.count_body_rejection(BodyRejection::ReadTimeout);
                if let Some(span) = span {
                    span.fail(
                        "body_read_timeout",
                        format!("the request body did not arrive within {timeout:?}"),
                    );
                }
                return body_timed_out(timeout);
            }
        };
        if let Some(span) = span.as_deref_mut() {
            span.mark(Phase::BodyRead);
            span.set_request_body_size(body.len());
        }
        if let Err(detail) = self.ensure_authority(&mut parts) {
            return error_response(StatusCode::BAD_REQUEST, "bad_request", detail);
        }
        let request = hyper::Request::from_parts(parts, Full::new(body));
        match self.host.handle(request, span.is_some()).await {
            Ok(answer) => {
                if let Some(span) = span {
                    if let Some(ready) = answer.instance_ready {
                        span.mark_at(Phase::InstanceReady, ready);
                    }
                    span.mark(Phase::GuestAnswered);
                }
                answer.response
            }
            Err(error) => self.guest_failure(error, span),
        }
    }

    /// wasi:http gives every incoming request an authority, taken from the
    /// URI or the `Host` header. HTTP/1.1 requires `Host` (RFC 9112, 3.2),
    /// so a request without one, or with one that is not text, is the
    /// client's error; HTTP/1.0 may omit it and gets this server's address.
    fn ensure_authority(&self, parts: &mut http::request::Parts) -> Result<(), &'static str> {
        if parts.uri.authority().is_some() {
            return Ok(());
        }
        match parts.headers.get(header::HOST) {
            Some(host) if host.to_str().is_ok() => Ok(()),
            Some(_) => Err("the Host header is not valid text"),
            None if parts.version <= Version::HTTP_10 => {
                parts
                    .headers
                    .insert(header::HOST, self.listen_authority.clone());
                Ok(())
            }
            None => Err("the request has no Host header, which HTTP/1.1 requires"),
        }
    }

    fn count_body_rejection(&self, rejection: BodyRejection) {
        if let Some(metrics) = &self.options.metrics {
            metrics.record_body_rejection(rejection);
        }
    }

    fn count_guest_failure(&self, failure: GuestFailure) {
        if let Some(metrics) = &self.options.metrics {
            metrics.record_guest_failure(failure);
        }
    }

    fn guest_failure(
        &self,
        error: GuestError,
        span: Option<&mut RequestSpan>,
    ) -> hyper::Response<WasiBody> {
        if let Some(span) = span {
            match &error {
                GuestError::Timeout => span.fail(
                    "timeout",
                    format!(
                        "the component did not answer within {:?}",
                        self.options.request_timeout
                    ),
                ),
                GuestError::Instantiation(error) => span.fail(
                    "instantiation",
                    format!("the component could not be instantiated: {error:#}"),
                ),
                GuestError::Failed(error) => span.fail(
                    "trap",
                    format!("the component failed before it answered: {error:#}"),
                ),
            }
        }
        match error {
            GuestError::Timeout => {
                self.count_guest_failure(GuestFailure::Timeout);
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    &format!(
                        "the component did not answer within {:?}",
                        self.options.request_timeout
                    ),
                )
            }
            GuestError::Instantiation(error) => {
                self.count_guest_failure(GuestFailure::Instantiation);
                tracing::error!(
                    error = format!("{error:#}"),
                    "cannot instantiate the component"
                );
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the component could not be started for this request",
                )
            }
            GuestError::Failed(error) => {
                self.count_guest_failure(GuestFailure::Trap);
                tracing::warn!(
                    error = format!("{error:#}"),
                    "the component failed a request"
                );
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "component_failed",
                    "the component failed before it answered",
                )
            }
        }
    }
}

enum BodyError {
    TooLarge,
    Read(hyper::Error),
}

/// After deciding on 413, keep reading (and discarding) the upload for at
/// most this much data and time before answering: a client still sending
/// would otherwise hit a reset mid-upload and never see the 413 (a
/// "lingering close", as nginx does).
const DRAIN_MAX_BYTES: usize = 16 << 20;
const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// Reads the whole body if it fits in `limit` bytes.
async fn read_body(
    mut body: Incoming,
    limit: usize,
    mut too_large: bool,
) -> Result<Bytes, BodyError> {
    let mut buffer = Vec::new();
    let mut drained = 0usize;
    let drain_until = tokio::time::Instant::now() + DRAIN_MAX_TIME;
    loop {
        let frame = if too_large {
            match tokio::time::timeout_at(drain_until, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => break,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = frame else { break };
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            continue; // trailers
        };
        if too_large {
            drained += data.len();
            if drained > DRAIN_MAX_BYTES {
                break;
            }
        } else if buffer.len() + data.len() > limit {
            too_large = true;
            drained = buffer.len() + data.len();
            buffer = Vec::new();
        } else {
            buffer.extend_from_slice(&data);
        }
    }
    if too_large {
        Err(BodyError::TooLarge)
    } else {
        Ok(Bytes::from(buffer))
    }
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

fn too_large(limit: usize) -> hyper::Response<WasiBody> {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("request body exceeds the runner's limit of {limit} bytes"),
    )
}

/// 408 for a body that did not arrive in time. The rest of it may still be
/// on its way, so the connection is closed after this answer rather than
/// read as the next request.
fn body_timed_out(timeout: Duration) -> hyper::Response<WasiBody> {
    let mut response = error_response(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        &format!("the request body did not arrive within {timeout:?}"),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn full(bytes: Bytes) -> WasiBody {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// An error answered by the runner itself, in the same JSON shape the
/// components use: `{"error": "...", "detail": "..."}`.
pub fn error_response(status: StatusCode, error: &str, detail: &str) -> hyper::Response<WasiBody> {
    let body = serde_json::json!({ "error": error, "detail": detail }).to_string();
    let mut response = hyper::Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Resolves with the name of the first shutdown signal received.
pub fn shutdown_signal() -> Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}
