//! The command line: flags, their environment variables and the checks a
//! configuration must pass before anything starts.
//!
//! Separate from serving so that every way a value reaches the runner (a
//! flag, an environment variable) can be parsed and checked without binding
//! a port or loading a component: `serve` runs these same checks first, and
//! the fuzz targets (`fuzz/`) run them on arbitrary input.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::host::DirMapping;
use crate::otel::config::TraceSettings;

#[derive(Parser, Debug)]
#[command(
    name = "runner",
    version,
    about = "Serve a wasi:http component over HTTP",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compile a component ahead of time into a `.cwasm` the runner loads
    /// without compiling (and that a runner built without Cranelift can run).
    #[cfg(feature = "compiler")]
    Compile {
        /// The component to compile (`.wasm`).
        input: PathBuf,
        /// Where to write the compiled component (`.cwasm`).
        #[arg(short, long)]
        output: PathBuf,
        /// Compile for another architecture, as a target triple such as
        /// `aarch64-unknown-linux-musl` (only the architecture and OS
        /// matter). Default: portable code for this machine's architecture.
        #[arg(long, value_name = "TRIPLE")]
        target: Option<String>,
    },
    /// GET a URL and exit 0 on a 2xx answer, 1 otherwise: a health check
    /// for images that have no shell or curl.
    Probe {
        url: String,
        /// Give up after this long.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "RUNNER_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    /// Make a host directory readable by the guest: HOST_DIR::GUEST_DIR
    /// (or just DIR for the same path on both sides). Repeatable.
    #[arg(long = "dir", value_name = "HOST_DIR::GUEST_DIR", value_parser = parse_dir)]
    pub dirs: Vec<DirMapping>,

    /// Set an environment variable for the guest: NAME=VALUE, or NAME to pass
    /// the runner's own value through. Repeatable.
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env)]
    pub env: Vec<(String, Option<String>)>,

    /// Set an environment variable for the guest to the contents of a host
    /// file (UTF-8, at most 64 KiB), re-read whenever the file changes, and
    /// unset while it is absent or unusable. Spares a guest that needs the
    /// file on every request from opening it in every fresh instance.
    #[arg(long = "env-from-file", value_name = "NAME=PATH", value_parser = parse_env_from_file)]
    pub env_from_file: Vec<(String, PathBuf)>,

    /// Refuse request bodies larger than this many bytes (413).
    #[arg(long, env = "RUNNER_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Cap on each instance's linear memory, in bytes.
    #[arg(long, env = "RUNNER_MAX_MEMORY_BYTES", default_value_t = 64 << 20)]
    pub max_memory_bytes: usize,

    /// A request that has no response after this long fails with 503.
    #[arg(long, env = "RUNNER_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// How many requests may run at once (others wait); also the size of
    /// the instance pool.
    #[arg(long, env = "RUNNER_MAX_CONCURRENT_REQUESTS", default_value_t = 128)]
    pub max_concurrent_requests: u32,

    /// The whole request body must arrive within this long; a client that
    /// stalls mid-body gets 408 and is disconnected.
    #[arg(long, env = "RUNNER_BODY_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics.
    /// Off unless set; a separate address keeps the service port the API alone.
    #[arg(long, env = "RUNNER_METRICS_ADDR", value_name = "IP:PORT")]
    pub metrics_addr: Option<SocketAddr>,

    /// After SIGTERM or SIGINT, how long in-flight requests may take.
    #[arg(long, env = "RUNNER_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Allocate instances on demand instead of from a pre-reserved pool.
    #[arg(long)]
    pub no_pooling: bool,

    /// Run guest filesystem calls on tokio's blocking pool instead of the
    /// request's thread. The inline default is faster for the small files
    /// guests read here; use this for slow or network filesystems.
    #[arg(long)]
    pub fs_on_blocking_pool: bool,

    /// Do not write the per-request access log line.
    #[arg(long)]
    pub no_access_log: bool,

    /// Write `/tmp/perf-PID.map`, which names the guest's functions in
    /// `perf` profiles (for profiling; see docs/benchmarks.md).
    #[arg(long)]
    pub perfmap: bool,

    #[command(flatten)]
    pub otel: OtelArgs,

    /// The component: a `.wasm` (compiled at start-up) or a `.cwasm` from
    /// `runner compile`.
    #[arg(required = true)]
    pub component: Option<PathBuf>,
}

/// OpenTelemetry tracing: one server span per request, exported over
/// OTLP/HTTP (protobuf). Each flag mirrors the OpenTelemetry SDK's standard
/// environment variable; tracing is off unless an endpoint is set.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "OpenTelemetry tracing (off unless an endpoint is set)")]
pub struct OtelArgs {
    /// Base URL of an OTLP/HTTP collector (`/v1/traces` is appended), e.g.
    /// http://otel-collector:4318.
    #[arg(
        long = "otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub endpoint: Option<String>,

    /// Full URL spans are sent to; overrides --otlp-endpoint.
    #[arg(
        long = "otlp-traces-endpoint",
        env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        value_name = "URL"
    )]
    pub traces_endpoint: Option<String>,

    /// Only `http/protobuf` is supported.
    #[arg(
        long = "otlp-protocol",
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_name = "PROTOCOL"
    )]
    pub protocol: Option<String>,

    /// Headers sent with every export: KEY=VALUE,... (values percent-encoded).
    #[arg(
        long = "otlp-headers",
        env = "OTEL_EXPORTER_OTLP_HEADERS",
        value_name = "KEY=VALUE,..."
    )]
    pub headers: Option<String>,

    /// How long one export may take before its spans are dropped, in milliseconds.
    #[arg(
        long = "otlp-timeout",
        env = "OTEL_EXPORTER_OTLP_TIMEOUT",
        value_name = "MS",
        default_value_t = 10_000
    )]
    pub timeout_ms: u64,

    /// `service.name` (default: the component's file name without extension).
    #[arg(
        long = "otel-service-name",
        env = "OTEL_SERVICE_NAME",
        value_name = "NAME"
    )]
    pub service_name: Option<String>,

    /// More resource attributes: KEY=VALUE,... (values percent-encoded).
    #[arg(
        long = "otel-resource-attributes",
        env = "OTEL_RESOURCE_ATTRIBUTES",
        value_name = "KEY=VALUE,..."
    )]
    pub resource_attributes: Option<String>,

    /// always_on, always_off, traceidratio, parentbased_always_on (default),
    /// parentbased_always_off or parentbased_traceidratio.
    #[arg(
        long = "otel-traces-sampler",
        env = "OTEL_TRACES_SAMPLER",
        value_name = "SAMPLER"
    )]
    pub sampler: Option<String>,

    /// The ratio of the *traceidratio samplers, from 0 to 1 (default 1).
    #[arg(
        long = "otel-traces-sampler-arg",
        env = "OTEL_TRACES_SAMPLER_ARG",
        value_name = "RATIO"
    )]
    pub sampler_arg: Option<String>,

    /// Longest wait of a span in the queue before its batch is sent, in milliseconds.
    #[arg(
        long = "otel-bsp-schedule-delay",
        env = "OTEL_BSP_SCHEDULE_DELAY",
        value_name = "MS",
        default_value_t = 5_000
    )]
    pub schedule_delay_ms: u64,

    /// Spans that may wait for export; beyond it spans are dropped (and counted).
    #[arg(
        long = "otel-bsp-max-queue-size",
        env = "OTEL_BSP_MAX_QUEUE_SIZE",
        value_name = "SPANS",
        default_value_t = 2048
    )]
    pub max_queue_size: usize,

    /// Spans per export request.
    #[arg(
        long = "otel-bsp-max-export-batch-size",
        env = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        value_name = "SPANS",
        default_value_t = 512
    )]
    pub max_export_batch_size: usize,
}

impl OtelArgs {
    /// The flags' values as the plain settings the tracing configuration is
    /// built from.
    pub fn settings(&self) -> TraceSettings {
        TraceSettings {
            endpoint: self.endpoint.clone(),
            traces_endpoint: self.traces_endpoint.clone(),
            protocol: self.protocol.clone(),
            headers: self.headers.clone(),
            timeout_ms: self.timeout_ms,
            service_name: self.service_name.clone(),
            resource_attributes: self.resource_attributes.clone(),
            sampler: self.sampler.clone(),
            sampler_arg: self.sampler_arg.clone(),
            schedule_delay_ms: self.schedule_delay_ms,
            max_queue_size: self.max_queue_size,
            max_export_batch_size: self.max_export_batch_size,
        }
    }
}

fn parse_dir(value: &str) -> Result<DirMapping, String> {
    let (host, guest) = value.split_once("::").unwrap_or((value, value));
    if host.is_empty() || guest.is_empty() {
        return Err("expected HOST_DIR::GUEST_DIR".into());
    }
    Ok(DirMapping {
        host: PathBuf::from(host),
        guest: guest.to_owned(),
    })
}

fn parse_env(value: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match value.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (value, None),
    };
    if name.is_empty() {
        return Err("expected NAME=VALUE or NAME".into());
    }
    Ok((name.to_owned(), value))
}

fn parse_env_from_file(value: &str) -> Result<(String, PathBuf), String> {
    match value.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(path)))
        }
        _ => Err("expected NAME=PATH".into()),
    }
}

/// What a component is called in logs, metrics and traces: its file name
/// without the extension (`/verifier.cwasm` is `verifier`).
pub fn component_name(path: &std::path::Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

impl ServeArgs {
    /// What must hold of a configuration before the runner starts serving:
    /// the checks clap's parsers cannot make on one value alone.
    ///
    /// Values are quoted in errors (`{:?}`): a path or a name can hold any
    /// character, and a newline in one must not break the one-line error
    /// (found by the `runner_flags` fuzz target).
    pub fn check(&self) -> Result<()> {
        let Some(component) = &self.component else {
            bail!("a component is required");
        };
        if self.max_concurrent_requests == 0 {
            bail!("--max-concurrent-requests must be at least 1");
        }
        for dir in &self.dirs {
            if !dir.host.is_dir() {
                bail!("--dir {:?}: not a directory", dir.host);
            }
        }
        // One value per name: a variable set twice would depend on the order.
        // A linear scan, as there are a handful: a hash set cost the image's
        // runner 20 KB.
        let names = self.env.iter().map(|(name, _)| name);
        let mut seen = Vec::new();
        for name in names.chain(self.env_from_file.iter().map(|(name, _)| name)) {
            if seen.contains(&name) {
                bail!("the guest environment variable {name:?} is set twice");
            }
            seen.push(name);
        }
        self.otel.settings().config(&component_name(component))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn check(args: &[&str]) -> Result<()> {
        let cli = Cli::try_parse_from(std::iter::once("runner").chain(args.iter().copied()))
            .expect("the arguments parse");
        cli.serve.check()
    }

    /// Found by the `runner_flags` fuzz target: a path with a newline broke
    /// the error into two lines.
    #[test]
    fn errors_stay_on_one_line_whatever_the_values() {
        let error = check(&["--dir", "/no\nsuch::/x", "c.wasm"])
            .unwrap_err()
            .to_string();
        assert_eq!(error, r#"--dir "/no\nsuch": not a directory"#);
        let error = check(&["--env", "A\nB=1", "--env", "A\nB=2", "c.wasm"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            r#"the guest environment variable "A\nB" is set twice"#
        );
    }

    #[test]
    fn a_configuration_that_passes_is_usable() {
        check(&[
            "--dir",
            "/tmp::/key",
            "--env",
            "A=1",
            "--env-from-file",
            "B=/k",
            "c.wasm",
        ])
        .unwrap();
        let error = check(&["--max-concurrent-requests", "0", "c.wasm"]).unwrap_err();
        assert!(error.to_string().contains("at least 1"), "{error}");
        let error = check(&["--env", "A", "--env-from-file", "A=/k", "c.wasm"]).unwrap_err();
        assert!(error.to_string().contains("set twice"), "{error}");
    }
}

/// The tracing flags, through the configuration they give. Here rather than
/// beside that configuration (`otel::config`) because the tracer is a layer
/// below the command line and its module must not use it.
#[cfg(test)]
mod otel_tests {
    use super::*;
    use crate::otel::config::TraceConfig;
    use crate::otel::context::Sampler;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Option<TraceConfig>> {
        let cli = Cli::try_parse_from(
            ["runner"]
                .into_iter()
                .chain(args.iter().copied())
                .chain(["c.cwasm"]),
        )
        .expect("the arguments parse");
        cli.serve.otel.settings().config("verifier")
    }

    fn error(args: &[&str]) -> String {
        let message = config(args).unwrap_err().to_string();
        assert!(!message.contains('\n'), "{message:?} is more than one line");
        message
    }

    #[test]
    fn off_without_an_endpoint() {
        assert!(config(&["--otel-service-name", "x"]).unwrap().is_none());
    }

    #[test]
    fn the_base_endpoint_gets_the_traces_path_and_the_traces_endpoint_does_not() {
        for (base, full) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            ("http://c:4318/otlp/", "http://c:4318/otlp/v1/traces"),
        ] {
            let config = config(&["--otlp-endpoint", base]).unwrap().unwrap();
            assert_eq!(config.endpoint.to_string(), full);
        }
        let config = config(&[
            "--otlp-endpoint",
            "http://ignored:1",
            "--otlp-traces-endpoint",
            "http://127.0.0.1:9/custom",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.endpoint.to_string(), "http://127.0.0.1:9/custom");
    }

    #[test]
    fn defaults_follow_the_sdk_specification() {
        let config = config(&["--otlp-endpoint", "http://c:4318"])
            .unwrap()
            .unwrap();
        assert_eq!(config.sampler, Sampler::DEFAULT);
        assert_eq!(config.export_timeout, Duration::from_secs(10));
        assert_eq!(config.schedule_delay, Duration::from_secs(5));
        assert_eq!((config.max_queue, config.max_batch), (2048, 512));
        assert_eq!(
            config.resource[0],
            ("service.name".into(), "verifier".into())
        );
        assert_eq!(config.resource[1].0, "service.version");
    }

    #[test]
    fn resource_attributes_headers_and_service_name() {
        let config = config(&[
            "--otlp-endpoint",
            "http://c:4318",
            "--otel-resource-attributes",
            "service.name=ignored, deployment.environment.name=prod%2Ceu ,k8s.pod.name=p-1",
            "--otel-service-name",
            "login-verifier",
            "--otlp-headers",
            "authorization=Bearer%20abc,x-tenant=7",
        ])
        .unwrap()
        .unwrap();
        let get = |key: &str| {
            config
                .resource
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("service.name"), Some("login-verifier"));
        assert_eq!(get("deployment.environment.name"), Some("prod,eu"));
        assert_eq!(get("k8s.pod.name"), Some("p-1"));
        assert_eq!(config.headers["authorization"], "Bearer abc");
        assert_eq!(config.headers["x-tenant"], "7");
    }

    #[test]
    fn samplers() {
        let sampler = |name: &str, arg: &str| {
            config(&[
                "--otlp-endpoint",
                "http://c:4318",
                "--otel-traces-sampler",
                name,
                "--otel-traces-sampler-arg",
                arg,
            ])
            .unwrap()
            .unwrap()
            .sampler
        };
        assert_eq!(
            sampler("parentbased_traceidratio", "0.25"),
            Sampler {
                root_ratio: 0.25,
                parent_based: true
            }
        );
        assert_eq!(
            sampler("always_off", "not read"),
            Sampler {
                root_ratio: 0.0,
                parent_based: false
            }
        );
    }

    #[test]
    fn bad_configuration_is_one_clear_line() {
        let endpoint = ["--otlp-endpoint", "http://c:4318"];
        let cases: [(&[&str], &str); 9] = [
            (&["--otlp-endpoint", "collector:4318"], "is not a URL"),
            (&["--otlp-endpoint", "not a url"], "is not a URL"),
            (
                &["--otlp-traces-endpoint", "https://c:4318/v1/traces"],
                "https is not supported",
            ),
            (&["--otlp-endpoint", "ftp://c/"], "is not http"),
            (
                &[
                    endpoint[0],
                    endpoint[1],
                    "--otel-traces-sampler",
                    "sometimes",
                ],
                "not a sampler",
            ),
            (
                &[
                    endpoint[0],
                    endpoint[1],
                    "--otel-traces-sampler",
                    "traceidratio",
                    "--otel-traces-sampler-arg",
                    "1.5",
                ],
                "is not a ratio from 0 to 1",
            ),
            (
                &[endpoint[0], endpoint[1], "--otlp-headers", "novalue"],
                "is not KEY=VALUE",
            ),
            (
                &[endpoint[0], endpoint[1], "--otlp-protocol", "grpc"],
                "http/protobuf only",
            ),
            (
                &[
                    endpoint[0],
                    endpoint[1],
                    "--otel-resource-attributes",
                    "a=%zz",
                ],
                "percent-encoded",
            ),
        ];
        for (args, expected) in cases {
            let message = error(args);
            assert!(message.contains(expected), "{args:?}: {message}");
        }
    }
}
