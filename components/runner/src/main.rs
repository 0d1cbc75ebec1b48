//! runner: serves one `wasi:http` component over HTTP/1.1, in the spirit of
//! `wasmtime serve`, small enough to be PID 1 in a `FROM scratch` image.
//!
//! ```text
//! runner [--addr IP:PORT] [--dir HOST::GUEST]... [--env NAME[=VALUE]]...
//!        [--env-from-file NAME=PATH]... COMPONENT
//! runner compile COMPONENT.wasm -o COMPONENT.cwasm [--target TRIPLE]
//! runner probe http://127.0.0.1:8000/readyz
//! ```

mod access_log;
mod engine;
mod file_env;
mod file_watch;
mod host;
mod metrics;
mod probe;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::engine::EngineOptions;
use crate::file_env::FileEnvVar;
use crate::host::{DirMapping, GuestSettings, Host};
use crate::metrics::Metrics;
use crate::server::ServerOptions;

/// mimalloc rather than the C library's allocator: the images link musl,
/// whose allocator made the shipped runner ~25% slower per request than the
/// same code on glibc (every request allocates a store, a WASI context and
/// HTTP buffers, from several threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process. mimalloc's heap would
/// otherwise take a 2 MiB page for each thread's first allocations (asked
/// for with `madvise`, which the `no_thp` build of mimalloc no longer does,
/// or given unasked by a kernel whose THP setting is `always`), each zeroed
/// on first touch: measured, 8 MiB of the runner's 19.5 MiB RSS and 1-1.5 ms
/// of its start-up CPU, for no gain per request. Best effort: a kernel or a
/// seccomp profile that refuses costs only that memory.
#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

#[derive(Parser, Debug)]
#[command(
    name = "runner",
    version,
    about = "Serve a wasi:http component over HTTP",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
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
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "RUNNER_ADDR", default_value = "0.0.0.0:8080")]
    addr: SocketAddr,

    /// Make a host directory readable by the guest: HOST_DIR::GUEST_DIR
    /// (or just DIR for the same path on both sides). Repeatable.
    #[arg(long = "dir", value_name = "HOST_DIR::GUEST_DIR", value_parser = parse_dir)]
    dirs: Vec<DirMapping>,

    /// Set an environment variable for the guest: NAME=VALUE, or NAME to pass
    /// the runner's own value through. Repeatable.
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env)]
    env: Vec<(String, Option<String>)>,

    /// Set an environment variable for the guest to the contents of a host
    /// file (UTF-8, at most 64 KiB), re-read whenever the file changes, and
    /// unset while it is absent or unusable. Spares a guest that needs the
    /// file on every request from opening it in every fresh instance.
    #[arg(long = "env-from-file", value_name = "NAME=PATH", value_parser = parse_env_from_file)]
    env_from_file: Vec<(String, PathBuf)>,

    /// Refuse request bodies larger than this many bytes (413).
    #[arg(long, env = "RUNNER_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,

    /// Cap on each instance's linear memory, in bytes.
    #[arg(long, env = "RUNNER_MAX_MEMORY_BYTES", default_value_t = 64 << 20)]
    max_memory_bytes: usize,

    /// A request that has no response after this long fails with 503.
    #[arg(long, env = "RUNNER_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,

    /// How many requests may run at once (others wait); also the size of
    /// the instance pool.
    #[arg(long, env = "RUNNER_MAX_CONCURRENT_REQUESTS", default_value_t = 128)]
    max_concurrent_requests: u32,

    /// The whole request body must arrive within this long; a client that
    /// stalls mid-body gets 408 and is disconnected.
    #[arg(long, env = "RUNNER_BODY_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    body_read_timeout: Duration,

    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics.
    /// Off unless set; a separate address keeps the service port the API alone.
    #[arg(long, env = "RUNNER_METRICS_ADDR", value_name = "IP:PORT")]
    metrics_addr: Option<SocketAddr>,

    /// After SIGTERM or SIGINT, how long in-flight requests may take.
    #[arg(long, env = "RUNNER_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,

    /// Allocate instances on demand instead of from a pre-reserved pool.
    #[arg(long)]
    no_pooling: bool,

    /// Run guest filesystem calls on tokio's blocking pool instead of the
    /// request's thread. The inline default is faster for the small files
    /// guests read here; use this for slow or network filesystems.
    #[arg(long)]
    fs_on_blocking_pool: bool,

    /// Do not write the per-request access log line.
    #[arg(long)]
    no_access_log: bool,

    /// Write `/tmp/perf-PID.map`, which names the guest's functions in
    /// `perf` profiles (for profiling; see docs/benchmarks.md).
    #[arg(long)]
    perfmap: bool,

    /// The component: a `.wasm` (compiled at start-up) or a `.cwasm` from
    /// `runner compile`.
    #[arg(required = true)]
    component: Option<PathBuf>,
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

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    disable_transparent_huge_pages();
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
    let component_path = args.component.context("a component is required")?;
    if args.max_concurrent_requests == 0 {
        bail!("--max-concurrent-requests must be at least 1");
    }
    for dir in &args.dirs {
        if !dir.host.is_dir() {
            bail!("--dir {}: not a directory", dir.host.display());
        }
    }
    // One value per name: a variable set twice would depend on the order.
    // A linear scan, as there are a handful: a hash set cost the image's
    // runner 20 KB.
    let names = args.env.iter().map(|(name, _)| name);
    let mut seen = Vec::new();
    for name in names.chain(args.env_from_file.iter().map(|(name, _)| name)) {
        if seen.contains(&name) {
            bail!("the guest environment variable {name} is set twice");
        }
        seen.push(name);
    }
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
    let loading = std::time::Instant::now();
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
    let metrics = args.metrics_addr.map(|_| {
        let name = component_path.file_name().unwrap_or_default();
        Arc::new(Metrics::new(
            &name.to_string_lossy(),
            args.max_concurrent_requests,
        ))
    });
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
        if let (Some(addr), Some(metrics)) = (args.metrics_addr, metrics) {
            let metrics_listener = metrics::bind(addr).await?;
            tracing::info!(addr = %metrics_listener.local_addr()?, "serving metrics at /metrics");
            tokio::spawn(metrics::serve(metrics_listener, metrics));
        }
        server::serve(listener, host, options, shutdown).await
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
