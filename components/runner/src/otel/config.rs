//! Tracing configuration: the OpenTelemetry SDK environment variables (or
//! the flags that mirror them, see `cli::OtelArgs`), checked once at
//! start-up so that a bad value stops the runner with one clear line
//! instead of losing every span later.
//!
//! Built from [`TraceSettings`], plain values, rather than from the command
//! line's types: the command line is a layer above the tracer (see the
//! crate's documentation).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use super::context::Sampler;

/// The tracing settings as given, each the value of one OpenTelemetry SDK
/// variable (or of the flag that mirrors it), not yet checked.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: a base URL.
    pub endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the full URL; wins over `endpoint`.
    pub traces_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: Option<String>,
    /// `OTEL_EXPORTER_OTLP_HEADERS`: `KEY=VALUE,...`, values percent-encoded.
    pub headers: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`.
    pub timeout_ms: u64,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`: `KEY=VALUE,...`, values percent-encoded.
    pub resource_attributes: Option<String>,
    /// `OTEL_TRACES_SAMPLER`.
    pub sampler: Option<String>,
    /// `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler_arg: Option<String>,
    /// `OTEL_BSP_SCHEDULE_DELAY`.
    pub schedule_delay_ms: u64,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`.
    pub max_queue_size: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
    pub max_export_batch_size: usize,
}

/// Everything the tracer and its exporter need; built by [`TraceSettings::config`].
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// Where spans are POSTed: the full OTLP/HTTP traces URL.
    pub endpoint: Uri,
    /// Sent with every export (`OTEL_EXPORTER_OTLP_HEADERS`), e.g. a token.
    pub headers: HeaderMap,
    /// The resource's attributes, `service.name` and `service.version` among them.
    pub resource: Vec<(String, String)>,
    pub sampler: Sampler,
    pub export_timeout: Duration,
    /// How long a span may wait in the queue before a batch is sent.
    pub schedule_delay: Duration,
    /// Spans that may wait for export; more are dropped and counted.
    pub max_queue: usize,
    /// Spans per export request.
    pub max_batch: usize,
}

impl TraceSettings {
    /// The tracing configuration, or `None` when no endpoint is set (tracing
    /// is off). `component` is the served file's name without its extension,
    /// the default `service.name`.
    pub fn config(&self, component: &str) -> Result<Option<TraceConfig>> {
        let endpoint = match (&self.traces_endpoint, &self.endpoint) {
            (Some(url), _) => endpoint(
                url,
                "--otlp-traces-endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)",
                false,
            )?,
            (None, Some(url)) => {
                endpoint(url, "--otlp-endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)", true)?
            }
            (None, None) => return Ok(None),
        };
        if let Some(protocol) = &self.protocol
            && protocol != "http/protobuf"
        {
            bail!(
                "--otlp-protocol (OTEL_EXPORTER_OTLP_PROTOCOL) {protocol:?}: \
                 the runner exports over http/protobuf only"
            );
        }
        let headers = match &self.headers {
            Some(list) => headers(list)?,
            None => HeaderMap::new(),
        };
        let mut resource = vec![
            ("service.name".to_owned(), component.to_owned()),
            (
                "service.version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
            ("telemetry.sdk.name".to_owned(), "runner".to_owned()),
            ("telemetry.sdk.language".to_owned(), "rust".to_owned()),
            (
                "telemetry.sdk.version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
        ];
        if let Some(list) = &self.resource_attributes {
            for (key, value) in key_values(
                list,
                "--otel-resource-attributes (OTEL_RESOURCE_ATTRIBUTES)",
            )? {
                set(&mut resource, key, value);
            }
        }
        if let Some(name) = &self.service_name {
            set(&mut resource, "service.name".to_owned(), name.clone());
        }
        if self.max_queue_size == 0 || self.max_export_batch_size == 0 {
            bail!(
                "--otel-bsp-max-queue-size and --otel-bsp-max-export-batch-size must be at least 1"
            );
        }
        Ok(Some(TraceConfig {
            endpoint,
            headers,
            resource,
            sampler: sampler(self.sampler.as_deref(), self.sampler_arg.as_deref())?,
            export_timeout: Duration::from_millis(self.timeout_ms),
            schedule_delay: Duration::from_millis(self.schedule_delay_ms),
            max_queue: self.max_queue_size,
            // The specification: a batch larger than the queue is the queue.
            max_batch: self.max_export_batch_size.min(self.max_queue_size),
        }))
    }
}

/// An OTLP/HTTP URL. `OTEL_EXPORTER_OTLP_ENDPOINT` is a base to which the
/// signal's path is appended; the per-signal variable is used as it is.
fn endpoint(url: &str, name: &str, append_signal_path: bool) -> Result<Uri> {
    let uri: Uri = url
        .parse()
        .ok()
        .filter(|uri: &Uri| uri.scheme().is_some() && uri.host().is_some_and(|h| !h.is_empty()))
        .with_context(|| format!("{name} {url:?} is not a URL (expected http://HOST:PORT)"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => bail!(
            "{name} {url:?}: https is not supported; the runner exports over plain http, \
             to a collector on the node or in the cluster"
        ),
        Some(other) => bail!("{name} {url:?}: the scheme {other:?} is not http"),
        None => unreachable!("checked above"),
    }
    if !append_signal_path {
        return Ok(uri);
    }
    let base = uri.path().trim_end_matches('/');
    let full = format!(
        "http://{}{base}/v1/traces",
        uri.authority().expect("a URL with a host has an authority")
    );
    full.parse()
        .with_context(|| format!("{name} {url:?} is not a URL (expected http://HOST:PORT)"))
}

fn headers(list: &str) -> Result<HeaderMap> {
    let name = "--otlp-headers (OTEL_EXPORTER_OTLP_HEADERS)";
    let mut map = HeaderMap::new();
    for (key, value) in key_values(list, name)? {
        let header = HeaderName::try_from(key.as_str())
            .with_context(|| format!("{name}: {key:?} is not a header name"))?;
        let value = HeaderValue::try_from(value)
            .with_context(|| format!("{name}: the value of {key:?} is not a header value"))?;
        map.append(header, value);
    }
    Ok(map)
}

/// `key1=value1,key2=value2` with percent-encoded values: the format of
/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS`.
fn key_values(list: &str, name: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for item in list.split(',') {
        if item.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = item.split_once('=') else {
            bail!("{name}: {item:?} is not KEY=VALUE");
        };
        let key = key.trim();
        if key.is_empty() {
            bail!("{name}: {item:?} has an empty key");
        }
        let value = percent_decode(value.trim()).with_context(|| {
            format!("{name}: the value of {key:?} is not valid percent-encoded UTF-8")
        })?;
        pairs.push((key.to_owned(), value));
    }
    Ok(pairs)
}

/// Strict, unlike `percent-encoding`'s decoder, which passes a malformed
/// `%zz` through as text: a mistyped value stops start-up instead of
/// reaching every span.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn set(resource: &mut Vec<(String, String)>, key: String, value: String) {
    match resource.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => resource.push((key, value)),
    }
}

fn sampler(name: Option<&str>, arg: Option<&str>) -> Result<Sampler> {
    let ratio = || -> Result<f64> {
        let Some(arg) = arg else { return Ok(1.0) };
        arg.trim()
            .parse::<f64>()
            .ok()
            .filter(|ratio| (0.0..=1.0).contains(ratio))
            .with_context(|| {
                format!(
                    "--otel-traces-sampler-arg (OTEL_TRACES_SAMPLER_ARG) {arg:?} \
                     is not a ratio from 0 to 1"
                )
            })
    };
    let (root_ratio, parent_based) = match name.unwrap_or("parentbased_always_on") {
        "always_on" => (1.0, false),
        "always_off" => (0.0, false),
        "traceidratio" => (ratio()?, false),
        "parentbased_always_on" => (1.0, true),
        "parentbased_always_off" => (0.0, true),
        "parentbased_traceidratio" => (ratio()?, true),
        other => bail!(
            "--otel-traces-sampler (OTEL_TRACES_SAMPLER) {other:?} is not a sampler the runner \
             knows: always_on, always_off, traceidratio, parentbased_always_on, \
             parentbased_always_off or parentbased_traceidratio"
        ),
    };
    Ok(Sampler {
        root_ratio,
        parent_based,
    })
}
