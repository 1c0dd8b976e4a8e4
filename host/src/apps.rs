//! Loading apps: each configured component is compiled (or taken from the code cache),
//! linked and pre-instantiated once, so the request path only instantiates.

use crate::capabilities::grants::Grants;
use crate::capabilities::keyvalue::Backend;
use crate::capabilities::outbound_http::OutboundClient;
use crate::capabilities::outbound_http::egress::Egress;
use crate::capabilities::postgres::PostgresPool;
use crate::capabilities::redis::RedisPool;
use crate::capabilities::wasi::WasiGrants;
use crate::code_cache::CodeCache;
use crate::config::{self, Limits};
use crate::fair_share::CpuShare;
use crate::pools::Pools;
use crate::sandbox::SandboxState;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// App-lifetime state of a tenant: its quotas and grants, shared by all its apps.
pub struct TenantRuntime {
    pub name: String,
    /// Host names it serves (empty: any host).
    pub hosts: Vec<String>,
    /// SHA-256 of its admin token, if it has one.
    pub admin_token: Option<config::TokenHash>,
    pub limits: Limits,
    /// One permit per request in flight; requests that find none get 429.
    pub admission: Arc<Semaphore>,
    /// This tenant's share of the CPU (see `fair_share`).
    pub cpu: CpuShare,
    /// Where its guests may call out to (`grants.outbound`, `grants.outbound_networks`).
    pub egress: Arc<Egress>,
    /// The tenant's own pooled outbound HTTP client: no connection is shared between tenants.
    pub http_client: OutboundClient,
    /// The prefix the host puts before this tenant's keys in shared stores (`tenant:NAME`).
    pub namespace: Arc<str>,
    pub keyvalue: Grants<Backend>,
    pub redis: Grants<Arc<RedisPool>>,
    pub postgres: Grants<Arc<PostgresPool>>,
    pub wasi: WasiGrants,
    /// Variables and secrets, read by guests through `wasi:config/store`.
    pub config: wasmtime_wasi_config::WasiConfigVariables,
}

impl TenantRuntime {
    /// `stores` are the host's open key-value stores, by name; `cpu_slots`: see
    /// [`crate::fair_share::cpu_slots`].
    pub fn new(
        tenant: &config::Tenant,
        stores: &HashMap<String, Backend>,
        pools: &Pools,
        cpu_slots: usize,
    ) -> Arc<TenantRuntime> {
        let egress = Arc::new(Egress::new(
            tenant.outbound.clone(),
            tenant.outbound_networks.clone(),
        ));
        Arc::new(TenantRuntime {
            name: tenant.name.clone(),
            hosts: tenant.hosts.clone(),
            admin_token: tenant.admin_token,
            limits: tenant.limits,
            admission: Arc::new(Semaphore::new(tenant.limits.concurrency as usize)),
            cpu: CpuShare::new(cpu_slots),
            http_client: OutboundClient::new(egress.clone()),
            egress,
            namespace: format!("tenant:{}", tenant.name).into(),
            keyvalue: Grants::new(
                "key-value store",
                "stores",
                &tenant.stores,
                stores.iter().map(|(n, s)| (n, Some(s.clone()))),
            ),
            redis: Grants::new(
                "Redis pool",
                "pools",
                &tenant.pools,
                pools.redis().iter().map(|(n, p)| (n, Some(p.clone()))),
            ),
            postgres: Grants::new(
                "PostgreSQL pool",
                "pools",
                &tenant.pools,
                pools
                    .postgres()
                    .iter()
                    .map(|(n, p)| (n, p.for_tenant(&tenant.name))),
            ),
            wasi: WasiGrants::from_tenant(tenant),
            config: tenant
                .config_values
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().clone()))
                .collect(),
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
    pub fn new(engine: &Engine, code_cache: &Path) -> Result<AppLoader> {
        Ok(AppLoader {
            engine: engine.clone(),
            linker: crate::capabilities::linker(engine)?,
            cache: CodeCache::new(code_cache, engine)?,
        })
    }

    /// Compiles (or takes from the cache), links and pre-instantiates a component. Errors say
    /// which file and why, in terms a guest author can act on.
    pub fn load(
        &self,
        tenant: Arc<TenantRuntime>,
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
            .context("it imports something this host does not provide")
            .with_context(describe)?;
        let pre = ProxyPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .context("it does not export `wasi:http/incoming-handler@0.2.x`: is it an HTTP handler (the `wasi:http/proxy` world)?")
            .with_context(describe)?;
        Ok(App {
            name: name.to_string(),
            route: route.to_string(),
            tenant,
            engine: self.engine.clone(),
            pre,
        })
    }
}
