//! Instances: one fresh store per request, instantiated from a component
//! linked and type-checked once at start-up (`ProxyPre`), then called
//! through its `wasi:http/incoming-handler` export.
//!
//! Per request we only build a small WASI context and instantiate, which is
//! cheap with the pooling allocator and copy-on-write memory images.
//! wasmtime-wasi-http's `handler` module is not used: it is built to reuse
//! instances across requests, and its component-model-async bookkeeping cost
//! about 8 % of a request here (see docs/benchmarks.md) for nothing, since an
//! instance here serves exactly one request.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Result, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::file_env::FileEnvVar;
use crate::metrics::Metrics;

/// A host directory made visible to the guest, read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMapping {
    pub host: PathBuf,
    pub guest: String,
}

/// What every request's store is given.
#[derive(Debug)]
pub struct GuestSettings {
    pub dirs: Vec<DirMapping>,
    pub env: Vec<(String, String)>,
    /// Variables whose values are files' contents (`--env-from-file`).
    pub env_from_files: Vec<FileEnvVar>,
    /// Per-instance linear memory cap, in bytes.
    pub max_memory_bytes: usize,
    /// A request that has not produced its response by then fails with 503.
    pub request_timeout: Duration,
    /// Run small filesystem calls (reading the key file) on the calling
    /// thread instead of tokio's blocking pool; see `--fs-on-blocking-pool`.
    pub fs_inline: bool,
}

/// The data of one request's store.
pub struct StoreState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: DenyOutbound,
    limits: StoreLimits,
}

/// The services make no outgoing requests, so the host allows none: a
/// compromised guest cannot reach the network.
struct DenyOutbound;

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(std::future::ready(Err(
            wasmtime_wasi_http::Error::HttpRequestDenied,
        )))
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Links `component` against WASI and wasi:http and pre-instantiates it.
pub fn pre_instantiate(engine: &Engine, component: &Component) -> Result<ProxyPre<StoreState>> {
    let mut linker = Linker::<StoreState>::new(engine);
    add_wasi_to_linker(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let pre = linker
        .instantiate_pre(component)
        .context("the component imports something this runner does not provide")?;
    ProxyPre::new(pre).context("the component does not export wasi:http/incoming-handler")
}

/// Adds the WASI interfaces a service may import: those of the
/// `wasi:http/proxy` world (I/O, clocks, random, stdio), and beyond it what
/// Rust's standard library and the token services use: environment, exit,
/// terminals, insecure random seeds (hash maps), and files, read-only.
///
/// `wasi:sockets` is left out on purpose. A service reaches nothing but its
/// own files (outgoing HTTP is denied too, see [`DenyOutbound`]), and a
/// component that imports sockets is refused at start-up rather than handed
/// interfaces that would fail at run time. Leaving them unlinked also keeps
/// their implementation out of the binary.
fn add_wasi_to_linker(linker: &mut Linker<StoreState>) -> Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, filesystem, random};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomCtx};

    fn random_ctx(state: &mut StoreState) -> &mut WasiRandomCtx {
        state.wasi.random()
    }

    wasmtime_wasi::p2::add_to_linker_proxy_interfaces_async(linker)?;
    let l = linker;
    random::insecure::add_to_linker::<_, WasiRandom>(l, random_ctx)?;
    random::insecure_seed::add_to_linker::<_, WasiRandom>(l, random_ctx)?;
    cli::environment::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    cli::exit::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, StoreState::cli)?;
    filesystem::preopens::add_to_linker::<_, WasiFilesystem>(l, StoreState::filesystem)?;
    filesystem::types::add_to_linker::<_, WasiFilesystem>(l, StoreState::filesystem)?;
    Ok(())
}

/// Creates a fresh instance for every request.
pub struct Host {
    pre: ProxyPre<StoreState>,
    engine: Engine,
    settings: GuestSettings,
    /// The preopened directories, opened once at start-up and shared (by
    /// reference-counted handle) with every request's WASI context: opening
    /// them per request cost an `openat` each. Directory handles carry no
    /// per-request state the guest could observe (`read-directory` opens its
    /// own handle), and the mounts the runner serves are directories whose
    /// contents change, not the directories themselves.
    filesystem: WasiFilesystemCtx,
    /// One permit per live instance, held until the instance is dropped, so
    /// the number of instances never exceeds the pool.
    instances: Arc<Semaphore>,
    metrics: Option<Arc<Metrics>>,
}

impl Host {
    /// Opens the directories of `settings`; fails if one cannot be opened.
    pub fn new(
        engine: Engine,
        pre: ProxyPre<StoreState>,
        settings: GuestSettings,
        max_instances: usize,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self> {
        let mut preopens = WasiCtxBuilder::new();
        preopens.allow_blocking_current_thread(settings.fs_inline);
        for dir in &settings.dirs {
            preopens
                .preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
                .with_context(|| format!("cannot open {}", dir.host.display()))?;
        }
        let filesystem = preopens.build().filesystem().clone();
        Ok(Self {
            pre,
            engine,
            settings,
            filesystem,
            instances: Arc::new(Semaphore::new(max_instances)),
            metrics,
        })
    }

    fn new_store(&self) -> Store<StoreState> {
        let settings = &self.settings;
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&settings.env);
        for var in &settings.env_from_files {
            if let Some(value) = var.value() {
                wasi.env(var.name(), &*value);
            }
        }
        // Guest output goes to stderr: stdout carries the access log.
        let mut wasi = wasi
            .stdout(std::io::stderr())
            .stderr(std::io::stderr())
            .build();
        *wasi.filesystem() = self.filesystem.clone();
        let state = StoreState {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            hooks: DenyOutbound,
            limits: StoreLimitsBuilder::new()
                .memory_size(settings.max_memory_bytes)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // At every epoch tick a running guest yields to the executor, so its
        // request's deadline can fire and drop it even if it never returns.
        // tokio's `yield_now` requeues the task behind pending I/O (wasmtime's
        // plain yield would re-run it at once from the LIFO slot), so a busy
        // guest cannot starve the accept loop or other connections.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| {
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }
}

/// Why a request got no response from its component.
#[derive(Debug)]
pub enum GuestError {
    /// The component did not answer within the request timeout.
    Timeout,
    /// No instance could be created for the request.
    Instantiation(wasmtime::Error),
    /// The guest trapped, answered with an error code, or returned without
    /// answering.
    Failed(wasmtime::Error),
}

/// A guest's response, and when its instance was ready if that was asked.
pub struct Answer {
    pub response: http::Response<WasiBody>,
    pub instance_ready: Option<Instant>,
}

impl Host {
    /// Runs `request` on a fresh instance and returns its response, whose
    /// body the guest may still be writing.
    ///
    /// The instance lives in a task of its own until its `handle` returns:
    /// a guest may set the response first and stream the body after. That
    /// task is bounded by the request timeout as a whole (instantiation,
    /// answering, and writing the body), and dropping it drops the store, so
    /// a guest that never finishes is stopped at its next epoch tick.
    ///
    /// With `timed`, the answer says when the instance was ready (for the
    /// request's trace span).
    pub async fn handle(
        &self,
        request: http::Request<Full<Bytes>>,
        timed: bool,
    ) -> Result<Answer, GuestError> {
        let permit = self.acquire_slot().await?;
        let in_use = self.metrics.as_ref().map(|m| m.instance_in_use());
        let mut store = self.new_store();
        let pre = self.pre.clone();
        let timeout = self.settings.request_timeout;

        let (answer, answered) = oneshot::channel();
        // Set once the guest has answered: a failure after that cannot
        // reach the client as an error response any more, so it is logged.
        let responded = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(GuestError::Instantiation)?;
                let instance_ready = timed.then(Instant::now);
                let outparam = {
                    let responded = responded.clone();
                    move |response| {
                        responded.store(true, Ordering::Relaxed);
                        // The receiver is gone if the client left; nothing to do.
                        let _ = answer.send((response, instance_ready));
                    }
                };
                let mut http = store.data_mut().http();
                let request = http
                    .new_incoming_request(Scheme::Http, request)
                    .map_err(GuestError::Failed)?;
                let outparam = http
                    .new_response_outparam_from_callback(outparam)
                    .map_err(GuestError::Failed)?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, outparam)
                    .await
                    .map_err(GuestError::Failed)
            };
            let result = match tokio::time::timeout(timeout, run).await {
                Ok(result) => result,
                Err(_elapsed) => Err(GuestError::Timeout),
            };
            drop(store);
            drop((permit, in_use));
            if let Err(error) = &result
                && responded.load(Ordering::Relaxed)
            {
                tracing::warn!(
                    error = ?error,
                    "the component failed after it had answered"
                );
            }
            result
        });

        match answered.await {
            Ok((Ok(response), instance_ready)) => Ok(Answer {
                response,
                instance_ready,
            }),
            Ok((Err(code), _)) => Err(GuestError::Failed(wasmtime::format_err!(
                "the component answered with the error {code:?}"
            ))),
            // The guest's side is gone without an answer: its task says why.
            Err(_) => match task.await {
                Ok(Ok(())) => Err(GuestError::Failed(wasmtime::format_err!(
                    "the component returned without setting a response"
                ))),
                Ok(Err(error)) => Err(error),
                Err(join) => Err(GuestError::Failed(wasmtime::format_err!(
                    "the component's task ended: {join}"
                ))),
            },
        }
    }

    /// Waits for a free instance slot; with metrics on, a request that has
    /// to wait is counted as waiting until it gets one (or is cancelled).
    async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit, GuestError> {
        if let Ok(permit) = self.instances.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _waiting = self.metrics.as_ref().map(|m| m.waiting_for_instance());
        let permit = self.instances.clone().acquire_owned().await;
        permit.map_err(|closed| GuestError::Instantiation(closed.into()))
    }
}
