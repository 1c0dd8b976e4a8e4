//! Loading apps: each configured component is compiled (or taken from the code cache),
//! linked and pre-instantiated once, so the request path only instantiates.

use crate::capabilities::wasi::WasiGrants;
use crate::code_cache::{CacheOutcome, CodeCache};
use crate::config::{self, Limits, OutboundRule};
use crate::sandbox::SandboxState;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// App-lifetime state of a tenant: its quotas and grants, shared by all its apps.
pub struct TenantRuntime {
    pub name: String,
    pub limits: Limits,
    /// One permit per request in flight; requests that find none get 503.
    pub admission: Arc<Semaphore>,
    pub outbound: Arc<[OutboundRule]>,
    pub wasi: WasiGrants,
}

impl TenantRuntime {
    pub fn new(tenant: &config::Tenant) -> Arc<TenantRuntime> {
        Arc::new(TenantRuntime {
            name: tenant.name.clone(),
            limits: tenant.limits,
            admission: Arc::new(Semaphore::new(tenant.limits.concurrency as usize)),
            outbound: tenant.outbound.clone().into(),
            wasi: WasiGrants::from_tenant(tenant),
        })
    }
}

/// A component ready to serve: compiled, linked, pre-instantiated.
pub struct App {
    pub name: String,
    pub route: String,
    pub tenant: Arc<TenantRuntime>,
    pub engine: Engine,
    pub pre: ProxyPre<SandboxState>,
    pub cache: CacheOutcome,
}

impl App {
    /// Loads `wasm` from `path`; errors say which file and why, in terms a guest author can act on.
    pub fn load(
        engine: &Engine,
        linker: &Linker<SandboxState>,
        cache: &CodeCache,
        tenant: Arc<TenantRuntime>,
        name: &str,
        route: &str,
        path: &Path,
    ) -> Result<App> {
        let wasm =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_bytes(engine, linker, cache, tenant, name, route, &wasm)
            .with_context(|| format!("component {}", path.display()))
    }

    pub fn from_bytes(
        engine: &Engine,
        linker: &Linker<SandboxState>,
        cache: &CodeCache,
        tenant: Arc<TenantRuntime>,
        name: &str,
        route: &str,
        wasm: &[u8],
    ) -> Result<App> {
        let (component, outcome) = cache.component(engine, wasm)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("it imports something this host does not provide")?;
        let pre = ProxyPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .context("it does not export `wasi:http/incoming-handler@0.2.x`: is it an HTTP handler (the `wasi:http/proxy` world)?")?;
        Ok(App {
            name: name.to_string(),
            route: route.to_string(),
            tenant,
            engine: engine.clone(),
            pre,
            cache: outcome,
        })
    }
}
