//! Apps: each component is compiled (or taken from the code cache), linked and
//! pre-instantiated once, so the request path only instantiates; and the set a host serves,
//! with where each app came from.

use crate::capabilities;
use crate::capabilities::shape::WasiReleases;
use crate::code_cache::{CacheOutcome, CodeCache};
use crate::engine::Engines;
use crate::metrics::{AppMeter, Metrics};
use crate::sandbox::{Handler, SandboxState};
use crate::tenant::Tenant;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// The largest component a deploy may have (interpreter guests are ~20 MB): what the admin
/// API takes and what a cluster's host fetches.
pub const MAX_COMPONENT: usize = 256 << 20;

/// A component ready to serve: compiled, linked, pre-instantiated.
pub struct App {
    pub name: String,
    pub route: String,
    pub tenant: Arc<Tenant>,
    pub handler: Handler,
    /// Its series; a new version of the app counts in the same ones.
    pub meter: Arc<AppMeter>,
}

/// Where a component's bytes come from.
pub enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

/// Turns components into ready apps: everything a load needs that outlives one app.
pub struct AppLoader {
    /// For WASI 0.2 components: an engine without the component model's concurrency.
    wasi_0_2: Linking,
    /// For WASI 0.3 components (and any other that needs async functions, streams, futures).
    wasi_0_3: Linking,
    metrics: Arc<Metrics>,
}

/// An engine, its linker (every capability's interfaces, see [`crate::capabilities`]) and its
/// code cache.
struct Linking {
    engine: Engine,
    linker: Linker<SandboxState>,
    cache: CodeCache,
}

impl Linking {
    fn new(engine: &Engine, releases: WasiReleases, code_cache: &Path) -> Result<Linking> {
        let mut linker = Linker::new(engine);
        capabilities::add_to_linker(&mut linker, releases)?;
        Ok(Linking {
            engine: engine.clone(),
            linker,
            cache: CodeCache::new(code_cache, engine)?,
        })
    }
}

impl AppLoader {
    pub fn new(engines: &Engines, code_cache: &Path, metrics: Arc<Metrics>) -> Result<AppLoader> {
        Ok(AppLoader {
            wasi_0_2: Linking::new(&engines.wasi_0_2, WasiReleases::V0_2, code_cache)?,
            wasi_0_3: Linking::new(&engines.wasi_0_3, WasiReleases::V0_3, code_cache)?,
            metrics,
        })
    }

    /// Compiles (or takes from the cache), links and pre-instantiates a component. Errors say
    /// which file and why, in terms a guest author can act on.
    pub fn load(
        &self,
        tenant: Arc<Tenant>,
        name: &str,
        route: &str,
        source: Source<'_>,
    ) -> Result<App> {
        let read;
        let wasm = match source {
            Source::Bytes(bytes) => bytes,
            Source::File(path) => {
                read = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                &read[..]
            }
        };
        let describe = || match source {
            Source::File(path) => format!("component {}", path.display()),
            Source::Bytes(_) => "component".to_string(),
        };
        // A component the WASI 0.2 engine cannot compile uses the component model's async
        // features: the WASI 0.3 engine takes it, or says why it is invalid.
        let (linking, (component, outcome)) =
            match self.wasi_0_2.cache.component(&self.wasi_0_2.engine, wasm) {
                Ok(loaded) => (&self.wasi_0_2, loaded),
                Err(_) => {
                    let loaded = (self.wasi_0_3.cache)
                        .component(&self.wasi_0_3.engine, wasm)
                        .with_context(describe)?;
                    (&self.wasi_0_3, loaded)
                }
            };
        self.metrics.code_loaded(match outcome {
            CacheOutcome::Hit => None,
            CacheOutcome::Miss(took) => Some(took),
        });
        let instance_pre = linking
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context(
                "it imports something this host does not provide (Hostel provides WASI 0.2.x and \
                 0.3.x, `wasi:http`, `wasi:keyvalue/*@0.2.0-draft2`, `wasi:config/store`, \
                 `hostel:host/*@0.1.0` and, to WASI 0.3 components, `hostel:host/*@0.2.0`)",
            )
            .with_context(describe)?;
        let handler = Handler::new(instance_pre).with_context(describe)?;
        Ok(App {
            meter: self.metrics.app(&tenant.name, name),
            name: name.to_string(),
            route: route.to_string(),
            tenant,
            handler,
        })
    }
}

/// (tenant, app name)
pub type AppKey = (String, String);

/// An app being served and where it came from.
#[derive(Clone)]
pub struct Installed {
    pub app: Arc<App>,
    pub origin: Origin,
}

#[derive(Clone)]
pub enum Origin {
    /// Named in the config file; changed by editing it.
    Config(PathBuf),
    /// Deployed through the admin API; persisted in its deployment manifest.
    Deployed(Deployment),
}

/// One deployed app, as the deployment manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub tenant: String,
    pub app: String,
    pub route: String,
    /// SHA-256 (hex) of the component: its blob's name.
    pub digest: String,
    pub size: u64,
    /// RFC 3339, UTC.
    pub deployed_at: String,
}

/// The deployed set, as stored: on disk beside the host ([`crate::admin::deployments`]) or in
/// the cluster's JetStream ([`crate::cluster`]).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub apps: Vec<Deployment>,
}
