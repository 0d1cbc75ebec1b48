//! The wasmtime engine: its configuration, and loading or precompiling a component.
//!
//! Everything that affects generated code lives in [`code_config`], which both
//! `runner compile` and the server use, so a `.cwasm` made by one always loads
//! in the other. Runtime-only choices (the instance allocator) come on top.

use std::path::Path;

use anyhow::{Context, Result, bail};
use wasmtime::component::Component;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Precompiled,
};

/// Settings of the engine that serves requests.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Use the pooling instance allocator (pre-reserved slots, no mmap per request).
    pub pooling: bool,
    /// How many instances may be alive at once (the pool's size).
    pub max_instances: u32,
    /// Largest linear memory one instance may grow to, in bytes.
    pub max_memory_bytes: usize,
}

/// Configuration that determines the compiled code.
fn code_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Deadlines are enforced with epochs: a cheap counter check in loops and
    // function prologues, ticked by one host thread for all instances.
    config.epoch_interruption(true);
    config
}

/// How much of a pooled slot's memory and tables is reset in place (and
/// kept resident) when its instance is dropped. A request to the token
/// services dirties a few hundred KiB; bigger instances are reset by
/// `madvise` beyond this.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Builds the engine that serves requests.
pub fn serving_engine(options: &EngineOptions) -> Result<Engine> {
    let mut config = code_config();
    if options.pooling {
        let n = options.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        // A wasm32-wasip2 component instantiates a handful of core modules
        // (the program, adapter shims) with a memory and a few tables; size
        // the pool for `n` such components so admission, not the pool,
        // limits concurrency.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(8))
            .total_stacks(n)
            .max_memory_size(options.max_memory_bytes)
            // Recycle a slot's pages instead of handing them back to the
            // kernel: on Linux >= 6.7 the pool asks which pages the last
            // instance dirtied (PAGEMAP_SCAN) and zeroes just those, so the
            // next instance takes no page faults and no `madvise` is needed.
            // Profiling showed page faults plus `madvise` at ~17% of the
            // runner's CPU per request without this. Older kernels fall back
            // to zeroing up to this many bytes with `memset`.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).map_err(Into::into)
}

/// Loads a component: a `.cwasm` made by `runner compile`, or (with the
/// `compiler` feature) a `.wasm` compiled now.
pub fn load_component(engine: &Engine, path: &Path) -> Result<Component> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match Engine::detect_precompiled(&bytes) {
        Some(Precompiled::Component) => {
            drop(bytes);
            // SAFETY: deserializing runs native code produced by Cranelift;
            // only artifacts made by `runner compile` belong here, and
            // wasmtime checks the engine version and settings before use.
            let component = unsafe { Component::deserialize_file(engine, path) };
            component.map_err(anyhow::Error::from).with_context(|| {
                format!(
                    "{} was not compiled for this runner; recompile it with `runner compile`",
                    path.display()
                )
            })
        }
        Some(Precompiled::Module) => bail!(
            "{} is a precompiled core module; the runner serves components",
            path.display()
        ),
        None => compile_now(engine, &bytes, path),
    }
}

#[cfg(feature = "compiler")]
fn compile_now(engine: &Engine, bytes: &[u8], path: &Path) -> Result<Component> {
    Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} is not a valid Wasm component", path.display()))
}

#[cfg(not(feature = "compiler"))]
fn compile_now(_engine: &Engine, _bytes: &[u8], path: &Path) -> Result<Component> {
    bail!(
        "{} is not a precompiled component and this runner was built without a compiler; \
         precompile it with `runner compile`",
        path.display()
    )
}

/// Compiles the component at `input` ahead of time into `output` (`.cwasm`).
#[cfg(feature = "compiler")]
pub fn precompile(input: &Path, output: &Path) -> Result<()> {
    let engine = Engine::new(&code_config())?;
    let bytes = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} is not a valid Wasm component", input.display()))?;
    std::fs::write(output, compiled).with_context(|| format!("cannot write {}", output.display()))
}
