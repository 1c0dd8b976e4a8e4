//! Apps: each component is compiled (or taken from the code cache), linked and
//! pre-instantiated once, so the request path only instantiates; and the set a host serves,
//! with where each app came from.

use crate::capabilities;
use crate::code_cache::CodeCache;
use crate::sandbox::{Handler, SandboxState};
use crate::tenant::Tenant;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// A component ready to serve: compiled, linked, pre-instantiated.
pub struct App {
    pub name: String,
    pub route: String,
    pub tenant: Arc<Tenant>,
    pub handler: Handler,
}

/// Where a component's bytes come from.
pub enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

/// Turns components into ready apps: everything a load needs that outlives one app.
pub struct AppLoader {
    engine: Engine,
    linker: Linker<SandboxState>,
    cache: CodeCache,
}

impl AppLoader {
    /// Every app is linked against one linker: every capability's interfaces (see
    /// [`crate::capabilities`]), for WASI 0.2.x and 0.3.x guests alike.
    pub fn new(engine: &Engine, code_cache: &Path) -> Result<AppLoader> {
        let mut linker = Linker::new(engine);
        capabilities::add_to_linker(&mut linker)?;
        Ok(AppLoader {
            engine: engine.clone(),
            linker,
            cache: CodeCache::new(code_cache, engine)?,
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
        let (component, _) = self
            .cache
            .component(&self.engine, wasm)
            .with_context(describe)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context(
                "it imports something this host does not provide (Hostel provides WASI 0.2.x and \
                 0.3.x, `wasi:http`, `wasi:keyvalue/*@0.2.0-draft2`, `wasi:config/store` and \
                 `hostel:host/*`; 0.3 guests get the WASI ones only)",
            )
            .with_context(describe)?;
        let handler = Handler::new(instance_pre).with_context(describe)?;
        Ok(App {
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
