//! The wasmtime engine: its configuration, and loading or precompiling a component.
//!
//! Everything that affects generated code lives in [`code_config`], which both
//! `runner compile` and the server use, so a `.cwasm` made by one always loads
//! in the other. Runtime-only choices (the instance allocator) come on top.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use wasmtime::component::Component;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy,
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
    /// Name the guest's compiled functions in `/tmp/perf-PID.map`, so that
    /// `perf report` shows them (profiling only).
    pub perfmap: bool,
}

/// Configuration that determines the compiled code.
fn code_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Deadlines are enforced with epochs: a cheap counter check in loops and
    // function prologues, ticked by one host thread for all instances.
    config.epoch_interruption(true);
    // No native-to-Wasm-offset map in the compiled code: it only adds byte
    // offsets to trap backtraces (function names stay, from the name
    // section) and was ~9 % of every `.cwasm` the images ship.
    config.generate_address_map(false);
    // No `.eh_frame` for the generated code either: on Linux it only serves
    // outside unwinders (gdb, the `backtrace` crate), while wasmtime's own
    // traps and Wasm backtraces walk frame pointers. It was ~5 % of a `.cwasm`.
    config.native_unwind_info(false);
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
    if options.perfmap {
        config.profiler(ProfilingStrategy::PerfMap);
    }
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

/// The first four bytes of every Wasm binary, core module or component.
const WASM_MAGIC: &[u8] = b"\0asm";

/// Loads a component: a `.cwasm` made by `runner compile`, or (with the
/// `compiler` feature) a `.wasm` compiled now.
pub fn load_component(engine: &Engine, path: &Path) -> Result<Component> {
    // Only the magic number is read to tell the two apart: a `.cwasm` is then
    // mapped, not read (reading all of it first was ~7 % of the runner's CPU
    // at start-up).
    let cannot_read = || format!("cannot read {}", path.display());
    let mut magic = Vec::with_capacity(WASM_MAGIC.len());
    File::open(path)
        .and_then(|file| file.take(WASM_MAGIC.len() as u64).read_to_end(&mut magic))
        .with_context(cannot_read)?;
    if magic == WASM_MAGIC {
        let bytes = std::fs::read(path).with_context(cannot_read)?;
        return compile_now(engine, &bytes, path);
    }
    // SAFETY: deserializing runs native code produced by Cranelift; only
    // artifacts made by `runner compile` belong here, and wasmtime checks
    // that the file is one, for this engine's version and settings, first.
    let component = unsafe { Component::deserialize_file(engine, path) };
    component.map_err(anyhow::Error::from).with_context(|| {
        format!(
            "{} is neither a Wasm component nor a component compiled for this runner \
             (compile it with `runner compile`)",
            path.display()
        )
    })
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

/// The architectures `runner compile --target` can compile for: the
/// Cranelift backends this runner is built with (see the `compiler` feature
/// in Cargo.toml), which are the architectures the images ship.
#[cfg(feature = "compiler")]
const COMPILE_ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// The architecture a target triple names, if this runner can compile for
/// it. Only the architecture and the OS matter: wasmtime checks just those
/// when it loads a `.cwasm`, so `aarch64-unknown-linux-musl` and
/// `aarch64-unknown-linux-gnu` mean the same code.
#[cfg(feature = "compiler")]
fn compile_arch(triple: &str) -> Result<&'static str> {
    let mut parts = triple.split('-');
    let arch = parts.next().unwrap_or_default();
    let linux = parts.any(|part| part == "linux");
    match COMPILE_ARCHES.iter().find(|known| **known == arch) {
        Some(known) if linux => Ok(known),
        _ => bail!(
            "cannot compile for target {triple:?}: this runner compiles for \
             x86_64 and aarch64 Linux only (e.g. aarch64-unknown-linux-musl)"
        ),
    }
}

/// [`code_config`] for code that runs on any CPU of an architecture that a
/// Kubernetes node plausibly has, not only on the build machine's: the
/// host's architecture, or the one `target` names (cross compilation).
///
/// Left alone, Cranelift uses every feature of the CPU it runs on (AVX2,
/// BMI2, LSE atomics, ...), and a `.cwasm` built on a new machine is refused
/// at start-up on an older node. Naming the target explicitly turns that
/// inference off and leaves every optional feature off; then we enable a
/// documented baseline:
///
/// - x86_64: x86-64-v2 (SSE4.2, POPCNT, CMPXCHG16B): every x86_64 server
///   CPU since 2009, and the floor of current enterprise distributions.
/// - aarch64: plain ARMv8.0-A, nothing optional (no LSE atomics, FP16,
///   dot product, I8MM or pointer authentication): Raspberry Pi 4's
///   Cortex-A72 has none of them, and it, Graviton 2+, Ampere Altra and
///   Apple M1+ all run ARMv8.0-A code. LSE only speeds up atomic
///   read-modify-write instructions, which guests built without Wasm
///   threads (like ours) do not contain, so the baseline costs them little.
///
/// The runner loads code compiled without a feature on any host, so the
/// JIT path keeps using everything the host has.
#[cfg(feature = "compiler")]
fn portable_code_config(target: Option<&str>) -> Result<Config> {
    let mut config = code_config();
    let arch = match target {
        Some(triple) => compile_arch(triple)?,
        // The images and deployments are Linux; elsewhere, compile for here.
        None if std::env::consts::OS != "linux" => return Ok(config),
        None => std::env::consts::ARCH,
    };
    // One triple per architecture serves the glibc and the musl runner.
    config
        .target(&format!("{arch}-unknown-linux-gnu"))
        .map_err(anyhow::Error::from)?;
    let baseline: &[&str] = match arch {
        "x86_64" => &[
            "has_sse3",
            "has_ssse3",
            "has_sse41",
            "has_sse42",
            "has_popcnt",
            "has_cmpxchg16b",
        ],
        // ARMv8.0-A: the defaults, with every optional feature off.
        _ => &[],
    };
    for feature in baseline {
        // SAFETY: these features are only promised to Cranelift; the
        // runner checks that the CPU has them before running the code.
        unsafe {
            config.cranelift_flag_enable(feature);
        }
    }
    Ok(config)
}

/// Compiles the component at `input` ahead of time into `output` (`.cwasm`),
/// for this machine's architecture or the one the `target` triple names.
#[cfg(feature = "compiler")]
pub fn precompile(input: &Path, output: &Path, target: Option<&str>) -> Result<()> {
    let engine = Engine::new(&portable_code_config(target)?)?;
    let bytes = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} is not a valid Wasm component", input.display()))?;
    std::fs::write(output, compiled).with_context(|| format!("cannot write {}", output.display()))
}

#[cfg(all(test, feature = "compiler", target_os = "linux"))]
mod tests {
    use super::*;

    /// The smallest valid component: no code, but its `.cwasm` still records
    /// the target and the CPU features it was compiled for, which is what is
    /// checked here.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    /// The optional aarch64 features Cranelift can use and wasmtime checks
    /// for at load time.
    const AARCH64_FEATURES: [&str; 5] = [
        "has_lse",
        "has_pauth",
        "has_fp16",
        "has_dotprod",
        "has_i8mm",
    ];

    fn precompiled(target: Option<&str>) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("c.wasm"), dir.path().join("c.cwasm"));
        std::fs::write(&input, EMPTY_COMPONENT).unwrap();
        precompile(&input, &output, target).unwrap();
        (dir, output)
    }

    #[test]
    fn targets_name_an_architecture_this_runner_compiles_for() {
        for triple in [
            "aarch64-unknown-linux-musl",
            "aarch64-unknown-linux-gnu",
            "aarch64-linux-gnu",
            "x86_64-unknown-linux-musl",
        ] {
            assert!(compile_arch(triple).is_ok(), "{triple}");
        }
        for triple in [
            "riscv64gc-unknown-linux-gnu",
            "aarch64-apple-darwin",
            "arm64",
            "",
        ] {
            let error = compile_arch(triple).unwrap_err().to_string();
            assert!(
                error.contains("x86_64 and aarch64 Linux only") && !error.contains('\n'),
                "{triple}: {error}"
            );
        }
    }

    #[test]
    fn cross_compiled_code_is_for_the_target_architecture() {
        let other = if cfg!(target_arch = "aarch64") {
            "x86_64-unknown-linux-musl"
        } else {
            "aarch64-unknown-linux-musl"
        };
        let (_dir, output) = precompiled(Some(other));
        let engine = Engine::new(&code_config()).unwrap();
        // SAFETY: the artifact was just made by `precompile`; it is refused
        // before anything is mapped executable.
        let loaded = unsafe { Component::deserialize_file(&engine, &output) };
        let Err(error) = loaded else {
            panic!("code for {other} must not load here")
        };
        let arch = other.split('-').next().unwrap();
        let error = format!("{error:#}");
        assert!(
            error.contains(&format!("compiled for architecture '{arch}'")),
            "{error}"
        );
    }

    /// wasmtime refuses to load code for another architecture before it
    /// looks at CPU features, so the load tests below run on their own
    /// architecture only. This one runs everywhere: the aarch64 settings
    /// that `precompile` uses are exactly "every optional feature off"
    /// (the compatibility hash covers the target and all Cranelift flags).
    #[test]
    fn aarch64_code_uses_no_optional_feature() {
        let hash = |config: &Config| {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut hasher = DefaultHasher::new();
            Engine::new(config)
                .unwrap()
                .precompile_compatibility_hash()
                .hash(&mut hasher);
            hasher.finish()
        };
        let portable = portable_code_config(Some("aarch64-unknown-linux-musl")).unwrap();
        let mut armv8_0 = code_config();
        armv8_0.target("aarch64-unknown-linux-gnu").unwrap();
        for feature in AARCH64_FEATURES {
            // SAFETY: only compared, never run.
            unsafe {
                armv8_0.cranelift_flag_set(feature, "false");
            }
        }
        assert_eq!(hash(&portable), hash(&armv8_0));
        // The control: the hash does see a feature, e.g. LSE atomics.
        let mut with_lse = armv8_0.clone();
        // SAFETY: only compared, never run.
        unsafe {
            with_lse.cranelift_flag_enable("has_lse");
        }
        assert_ne!(hash(&portable), hash(&with_lse));
    }

    #[cfg(target_arch = "x86_64")]
    mod x86_64 {
        use super::*;

        /// An engine that loads code as a CPU with only x86-64-v2 would.
        fn x86_64_v2_engine() -> Engine {
            let mut config = code_config();
            config.enable_compiler(false);
            // SAFETY: only used to check compatibility; nothing is run.
            unsafe {
                config.detect_host_feature(|feature| {
                    Some(matches!(
                        feature,
                        "sse3" | "ssse3" | "sse4.1" | "sse4.2" | "popcnt" | "cmpxchg16b"
                    ))
                });
            }
            Engine::new(&config).unwrap()
        }

        #[test]
        fn precompiled_components_load_on_an_x86_64_v2_cpu() {
            let (_dir, output) = precompiled(None);
            // SAFETY: the artifact was just made by `precompile`.
            let loaded = unsafe { Component::deserialize_file(&x86_64_v2_engine(), &output) };
            loaded.expect("a portable .cwasm loads on an x86-64-v2 CPU");
        }

        #[test]
        fn host_tuned_code_would_not_load_there() {
            // The control: what `precompile` did before it pinned a baseline.
            if !std::is_x86_feature_detected!("avx2") {
                return; // this build machine has nothing beyond the baseline
            }
            let engine = Engine::new(&code_config()).unwrap();
            let compiled = engine.precompile_component(EMPTY_COMPONENT).unwrap();
            // SAFETY: the artifact was just made by this process.
            let loaded = unsafe { Component::deserialize(&x86_64_v2_engine(), &compiled) };
            let Err(error) = loaded else {
                panic!("host-tuned code must be refused on an x86-64-v2 CPU")
            };
            let error = format!("{error:#}");
            assert!(error.contains("incompatible with native host"), "{error}");
        }
    }

    /// On arm64 machines (natively; wasmtime will not load aarch64 code in
    /// an x86_64 process). The images' arm64 runner is also run on an
    /// emulated Cortex-A72 by tests/e2e/test_arm64.py.
    #[cfg(target_arch = "aarch64")]
    mod aarch64 {
        use super::*;

        /// An engine that loads code as an ARMv8.0-A CPU (Cortex-A72) would.
        fn armv8_0_engine() -> Engine {
            let mut config = code_config();
            config.enable_compiler(false);
            // SAFETY: only used to check compatibility; nothing is run.
            unsafe {
                config.detect_host_feature(|_| Some(false));
            }
            Engine::new(&config).unwrap()
        }

        #[test]
        fn precompiled_components_load_on_an_armv8_0_cpu() {
            for target in [None, Some("aarch64-unknown-linux-musl")] {
                let (_dir, output) = precompiled(target);
                // SAFETY: the artifact was just made by `precompile`.
                let loaded = unsafe { Component::deserialize_file(&armv8_0_engine(), &output) };
                loaded.expect("a portable .cwasm loads on an ARMv8.0-A CPU");
            }
        }

        #[test]
        fn code_tuned_for_newer_cpus_would_not_load_there() {
            // The control: LSE atomics, which Graviton 2+, Ampere Altra and
            // Apple M1 have and which host-tuned compilation would use.
            let mut config = portable_code_config(None).unwrap();
            // SAFETY: the code is only checked for compatibility, not run.
            unsafe {
                config.cranelift_flag_enable("has_lse");
            }
            let compiled = Engine::new(&config)
                .unwrap()
                .precompile_component(EMPTY_COMPONENT)
                .unwrap();
            // SAFETY: the artifact was just made by this process.
            let loaded = unsafe { Component::deserialize(&armv8_0_engine(), &compiled) };
            let Err(error) = loaded else {
                panic!("code using LSE must be refused on an ARMv8.0-A CPU")
            };
            let error = format!("{error:#}");
            assert!(error.contains("incompatible with native host"), "{error}");
        }
    }
}
