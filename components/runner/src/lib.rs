//! runner: serves one `wasi:http` component over HTTP/1.1, in the spirit of
//! `wasmtime serve`, small enough to be PID 1 in a `FROM scratch` image.
//!
//! ```text
//! runner [--addr IP:PORT] [--dir HOST::GUEST]... [--env NAME[=VALUE]]...
//!        [--env-from-file NAME=PATH]... COMPONENT
//! runner compile COMPONENT.wasm -o COMPONENT.cwasm [--target TRIPLE]
//! runner probe http://127.0.0.1:8000/readyz
//! ```
//!
//! # Layers
//!
//! A module uses only modules on the lines below its own, so none uses one
//! that uses it back; `tests/layers.rs` reads this drawing and checks every
//! file's `crate::`, `super::` and `self::` paths against it.
//!
//! ```text
//! lib
//!  |
//! cli
//!  |
//! server
//!  |
//! otel
//!  |
//! host         access_log   otel::export
//!  |
//! file_env     metrics      otel::config   otel::span
//!  |
//! file_watch   routes       engine         probe        otel::context   otel::proto
//! ```
//!
//! [`main`] parses the command line (`cli`, clap's types) and turns it into
//! the plain values the layers below are built from: `GuestSettings`,
//! `TraceSettings`, `ServerOptions`. The tracer's configuration is made of
//! such values, not of flags; the metrics define their own reasons and know
//! nothing of the tracer; the bottom line uses nothing of the crate.
//! `main.rs`, the binary, only calls [`main`].

mod access_log;
pub mod cli;
mod engine;
pub mod file_env;
mod file_watch;
mod host;
mod metrics;
pub mod otel;
mod probe;
mod routes;
mod server;

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, Command, ServeArgs};
use crate::engine::EngineOptions;
use crate::file_env::FileEnvVar;
use crate::host::{GuestSettings, Host};
use crate::metrics::Metrics;
use crate::otel::{Exporter, Tracer};
use crate::server::ServerOptions;

/// The `runner` program: parses the command line and runs what it asks for.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        #[cfg(feature = "compiler")]
        Some(Command::Compile {
            input,
            output,
            target,
        }) => engine::precompile(&input, &output, target.as_deref()),
        Some(Command::Probe { url, timeout }) => return run_probe(&url, timeout),
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("runner: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// JSON lines on stdout: the access log and the runner's own events.
/// `RUNNER_LOG` sets the level (`error`, `warn`, `info`, `debug`, `trace`,
/// `off`); a level rather than a full filter keeps the regex engine out of
/// the binary.
fn init_logging() {
    use tracing_subscriber::filter::LevelFilter;
    let level = match std::env::var("RUNNER_LOG") {
        Ok(value) => value.parse().unwrap_or_else(|_| {
            eprintln!("runner: RUNNER_LOG={value:?} is not a level; using info");
            LevelFilter::INFO
        }),
        Err(_) => LevelFilter::INFO,
    };
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_max_level(level)
        .with_writer(std::io::stdout)
        .init();
}

fn run_probe(url: &str, timeout: Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("runner probe: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(probe::probe(url, timeout)) {
        Ok(status) if status.is_success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("runner probe: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("runner probe: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    args.check()?;
    let component_path = args.component.context("a component is required")?;
    let env = args
        .env
        .into_iter()
        .filter_map(|(name, value)| match value {
            Some(value) => Some((name, value)),
            None => std::env::var(&name).ok().map(|value| (name, value)),
        })
        .collect();
    let env_from_files = args
        .env_from_file
        .into_iter()
        .map(|(name, path)| FileEnvVar::new(name, path))
        .collect();

    let engine = engine::serving_engine(&EngineOptions {
        pooling: !args.no_pooling,
        max_instances: args.max_concurrent_requests,
        max_memory_bytes: args.max_memory_bytes,
        perfmap: args.perfmap,
    })?;
    let loading = Instant::now();
    let component = engine::load_component(&engine, &component_path)?;
    let pre = host::pre_instantiate(&engine, &component)?;
    tracing::info!(
        component = %component_path.display(),
        micros = loading.elapsed().as_micros() as u64,
        "component loaded"
    );

    let settings = GuestSettings {
        dirs: args.dirs,
        env,
        env_from_files,
        max_memory_bytes: args.max_memory_bytes,
        request_timeout: args.request_timeout,
        fs_inline: !args.fs_on_blocking_pool,
    };
    let trace_config = args
        .otel
        .settings()
        .config(&cli::component_name(&component_path))?;
    let metrics = args.metrics_addr.map(|_| {
        let name = component_path.file_name().unwrap_or_default();
        Arc::new(Metrics::new(
            &name.to_string_lossy(),
            args.max_concurrent_requests,
        ))
    });
    let (tracer, exporter) = trace_config
        .map(|config| {
            tracing::info!(endpoint = %config.endpoint, "exporting traces over OTLP/HTTP");
            Tracer::new(config, metrics.clone())
        })
        .unzip();
    let host = Host::new(
        engine.clone(),
        pre,
        settings,
        args.max_concurrent_requests as usize,
        metrics.clone(),
    )?;
    let options = ServerOptions {
        max_body_bytes: args.max_body_bytes,
        shutdown_timeout: args.shutdown_timeout,
        request_timeout: args.request_timeout,
        body_read_timeout: args.body_read_timeout,
        // The access line is an `info` line: `RUNNER_LOG=warn` turns it off too.
        access_log: !args.no_access_log
            && tracing::enabled!(target: "access", tracing::Level::INFO),
        metrics: metrics.clone(),
        tracer,
    };

    // The ticker must outlive the runtime: a guest spinning in a loop only
    // gives its worker thread back at an epoch tick, so without ticks the
    // runtime's shutdown would wait on that thread for ever.
    let _ticker = EpochTicker::start(engine);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let shutdown = server::shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        tracing::info!(addr = %listener.local_addr()?, "listening");
        if let (Some(addr), Some(metrics)) = (args.metrics_addr, metrics.clone()) {
            let metrics_listener = metrics::bind(addr).await?;
            tracing::info!(addr = %metrics_listener.local_addr()?, "serving metrics at /metrics");
            tokio::spawn(metrics::serve(metrics_listener, metrics));
        }
        // The exporter runs on this runtime, beside the requests whose
        // spans it sends; at shutdown it gets what is left of the drain's time.
        let exporter = exporter.map(Exporter::spawn);
        let shutdown_timeout = options.shutdown_timeout;
        let stopping = Arc::new(OnceLock::new());
        let shutdown = {
            let stopping = stopping.clone();
            async move {
                let signal = shutdown.await;
                let _ = stopping.set(Instant::now());
                signal
            }
        };
        let served = server::serve(listener, host, options, shutdown).await;
        if let Some(exporter) = exporter {
            let spent = stopping.get().map_or(Duration::ZERO, |at| at.elapsed());
            exporter
                .shutdown(shutdown_timeout.saturating_sub(spent))
                .await;
        }
        served
    });
    // The drain has already had its time; a task that still did not stop
    // is not worth waiting for.
    runtime.shutdown_timeout(RUNTIME_STOP_GRACE);
    served
}

/// How long tasks left after the drain get to stop before the process exits.
const RUNTIME_STOP_GRACE: Duration = Duration::from_millis(100);

/// Advances the engine's epoch so that running guests reach their deadline
/// checks; one thread serves all instances.
struct EpochTicker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// How often guests are interrupted to check their deadline.
const EPOCH_TICK: Duration = Duration::from_millis(10);

impl EpochTicker {
    fn start(engine: wasmtime::Engine) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning a thread at start-up");
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
