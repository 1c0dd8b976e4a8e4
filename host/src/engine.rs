//! The one wasmtime `Engine` of the process: how guests are compiled and where their memory
//! comes from.
//!
//! Instances come from the pooling allocator: memory slots are reserved once and recycled, and
//! linear memory is initialised copy-on-write from the compiled image, so a new sandbox per
//! request costs a few page mappings rather than a fresh allocation and a memcpy.

use crate::capabilities::shape::WasiReleases;
use anyhow::{Context, Result};
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. It is the granularity of deadlines and of the time slices
/// after which a busy guest yields its thread to other requests.
/// 1 ms: a busy guest of one tenant delays another tenant's request by at most about that.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Sizes the engine must accommodate, taken from the whole configuration.
#[derive(Debug, Clone, Copy)]
pub struct EngineSizing {
    /// Sandboxes alive at once, across all tenants.
    pub max_instances: u32,
    /// The largest per-instance memory limit of any tenant.
    pub max_memory: u64,
    /// `server.memory_keep_resident`.
    pub keep_resident: u64,
}

/// Builds the engine for the apps of `releases`. WASI 0.3 needs the component model's
/// concurrency (async functions, `stream`, `future`); with it every guest call goes through the
/// store's concurrent event loop, which costs a WASI 0.2 hello ~4 µs per request (measured with
/// `hostel measure`), so WASI 0.2 apps get an engine without it.
pub fn build_engine(sizing: EngineSizing, releases: WasiReleases) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    match releases {
        WasiReleases::V0_2 => _ = config.concurrency_support(false),
        WasiReleases::V0_3 => _ = config.wasm_component_model_async(true),
    }
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config.parallel_compilation(true);

    let instances = sizing.max_instances;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        // Components are made of several core instances (the program, adapters, shims); large
        // language runtimes (Python, JavaScript) use a few dozen.
        .total_core_instances(instances.saturating_mul(8))
        .max_core_instances_per_component(64)
        .total_memories(instances.saturating_mul(2))
        .max_memories_per_component(8)
        .total_tables(instances.saturating_mul(4))
        .max_tables_per_component(16)
        .table_elements(100_000)
        .total_stacks(instances)
        .max_core_instance_size(8 << 20)
        .max_component_instance_size(1 << 20)
        .max_memory_size(usize::try_from(sizing.max_memory).context("memory limit too large")?)
        // When a slot is recycled, the pages the last guest wrote are found with Linux's
        // PAGEMAP_SCAN (6.7+; otherwise the first pages are assumed dirty) and, up to
        // `keep_resident`, reset by copying and kept mapped; the rest are returned with madvise
        // and fault back in on next use. Measured with `hostel measure`: scanning makes a
        // JavaScript hello ~35% and a Rust hello ~20% cheaper; beyond 4 MiB nothing gains.
        .linear_memory_keep_resident(
            usize::try_from(sizing.keep_resident).context("memory_keep_resident too large")?,
        )
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("cannot set up the wasm engine (the pooling allocator reserves virtual memory per instance: lower `server.max_instances` if this machine limits address space)")
}

/// The two engines of the process: apps are compiled for one or the other.
pub struct Engines {
    pub wasi_0_2: Engine,
    pub wasi_0_3: Engine,
}

impl Engines {
    pub fn build(sizing: EngineSizing) -> Result<Engines> {
        Ok(Engines {
            wasi_0_2: build_engine(sizing, WasiReleases::V0_2)?,
            wasi_0_3: build_engine(sizing, WasiReleases::V0_3)?,
        })
    }

    /// Starts the one thread that advances both engines' epochs.
    pub fn start_epoch_ticker(&self) {
        start_epoch_ticker(&[&self.wasi_0_2, &self.wasi_0_3]);
    }
}

/// Advances the engines' epochs forever, from one thread for the whole process; every running
/// guest checks its deadline against its engine's. Stops when the engines are dropped.
fn start_epoch_ticker(engines: &[&Engine]) {
    let engines: Vec<_> = engines.iter().map(|engine| engine.weak()).collect();
    std::thread::Builder::new()
        .name("hostel-epoch".into())
        .spawn(move || {
            loop {
                let alive: Vec<Engine> = engines.iter().filter_map(|e| e.upgrade()).collect();
                if alive.is_empty() {
                    return;
                }
                alive.iter().for_each(Engine::increment_epoch);
                drop(alive);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("cannot start the epoch thread");
}
