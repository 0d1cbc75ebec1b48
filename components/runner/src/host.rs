//! Instances: one fresh store per request, created by wasmtime-wasi-http's
//! [`ProxyHandler`] through the [`HandlerState`] implemented here.
//!
//! The component is linked and type-checked once at start-up (`ProxyPre`);
//! per request we only build a small WASI context and instantiate, which is
//! cheap with the pooling allocator and copy-on-write memory images.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::error::Context as _;
use wasmtime::{
    Engine, Result, Store, StoreContextMut, StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::metrics::{GaugeGuard, Metrics};

/// A host directory made visible to the guest, read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMapping {
    pub host: PathBuf,
    pub guest: String,
}

/// What every request's store is given.
#[derive(Debug, Clone)]
pub struct GuestSettings {
    pub dirs: Vec<DirMapping>,
    pub env: Vec<(String, String)>,
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
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let pre = linker
        .instantiate_pre(component)
        .context("the component imports something this runner does not provide")?;
    let pre = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre)
        .context("the component does not export wasi:http/incoming-handler")?;
    Ok(ProxyPre::P2(pre))
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
        let mut wasi = WasiCtxBuilder::new()
            .envs(&settings.env)
            // Guest output goes to stderr: stdout carries the access log.
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

impl Host {
    /// Waits for a free instance slot; with metrics on, a request that has
    /// to wait is counted as waiting until it gets one (or is cancelled).
    async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit> {
        if let Ok(permit) = self.instances.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _waiting = self.metrics.as_ref().map(|m| m.waiting_for_instance());
        Ok(self.instances.clone().acquire_owned().await?)
    }
}

impl HandlerState for Host {
    type StoreData = StoreState;
    type WorkerExpiration = Deadline;
    type WorkerState = SingleRequest;

    async fn instantiate(&self) -> Result<Instance<StoreState, Deadline, SingleRequest>> {
        let permit = self.acquire_slot().await?;
        let in_use = self
            .metrics
            .as_ref()
            .map(|metrics| metrics.instance_in_use());
        let mut store = self.new_store();
        let timeout = self.settings.request_timeout;
        let proxy = tokio::time::timeout(timeout, self.pre.instantiate_async(&mut store))
            .await
            .map_err(|_| wasmtime::format_err!("instantiation took longer than {timeout:?}"))??;
        Ok(Instance {
            store,
            proxy,
            view: <StoreState as WasiHttpView>::http,
            expiration: Deadline::new(timeout),
            state: SingleRequest {
                timeout,
                _permit: permit,
                _in_use: in_use,
            },
        })
    }
}

/// Each instance serves exactly one request, then is dropped: no state
/// leaks between requests, and a misbehaving request harms only itself.
pub struct SingleRequest {
    timeout: Duration,
    _permit: OwnedSemaphorePermit,
    _in_use: Option<GaugeGuard>,
}

impl WorkerState for SingleRequest {
    type StoreData = StoreState;
    type RequestData = ();

    fn should_accept_request(&self, _concurrent: usize, total: usize) -> ShouldAccept {
        if total == 0 {
            ShouldAccept::Yes
        } else {
            ShouldAccept::Never
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, StoreState>,
        _data: (),
        _task: wasmtime::component::GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        Box::pin(tokio::time::sleep(self.timeout))
    }

    fn drop(&self, store: Store<StoreState>, result: Result<()>) {
        if let Err(error) = result {
            tracing::warn!(error = format!("{error:#}"), "guest instance failed");
        }
        drop(store);
    }
}

/// How long an instance may sit idle (as `wasmtime serve`'s default).
const IDLE_LIMIT: Duration = Duration::from_secs(1);

/// Expires a worker whose request outlives the timeout. The handler also
/// races each request against `on_request_start`'s timer; this is the second
/// line of defence the handler's documentation asks for.
pub struct Deadline {
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl WorkerExpiration for Deadline {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        // A single-use instance leaves by itself once its request is done;
        // the idle limit only bounds background work a guest might start.
        let limit = match status {
            WorkerStatus::Idle => IDLE_LIMIT,
            WorkerStatus::Requests | WorkerStatus::PostReturn => this.timeout,
        };
        let deadline = tokio::time::Instant::from_std(start + limit);
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        this.sleep.as_mut().poll(cx)
    }
}
