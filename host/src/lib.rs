//! Hostel: a WebAssembly component hosting runtime.
//!
//! One process owns the long-lived things — compiled code, pools, clients — and lends them to
//! short-lived guests: HTTP handler components that get a fresh sandbox for every request.
//!
//! The request path, in file order: [`server`] (accept, HTTP/1.1 + h2c) → [`request`] (request
//! id, error responses) → [`router`] (Host + path prefix) → [`admission`] (concurrency, body
//! size) → [`sandbox`] (new `Store`, limits, deadline, guest call). Loaded once at startup:
//! [`config`], [`engine`], [`code_cache`], [`apps`], [`capabilities`].

pub mod admission;
pub mod apps;
pub mod capabilities;
pub mod code_cache;
pub mod config;
pub mod engine;
pub mod guest_tools;
pub mod measure;
pub mod pools;
pub mod request;
pub mod request_id;
pub mod router;
pub mod sandbox;
pub mod server;

use anyhow::{Context, Result};
use apps::{AppLoader, Source, TenantRuntime};
use capabilities::keyvalue::Backend;
use config::Config;
use engine::EngineSizing;
use pools::Pools;
use router::Router;
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::Engine;

/// Everything a running host shares between requests.
pub struct Host {
    engine: Engine,
    router: Router,
    pools: Pools,
}

impl Host {
    /// Builds the engine and loads every app in the configuration. Fails on the first app that
    /// cannot be served, naming its config key and file.
    pub fn load(config: &Config) -> Result<Host> {
        let max_memory = config
            .tenants
            .iter()
            .map(|t| t.limits.memory)
            .max()
            .unwrap_or(config::DEFAULT_MEMORY);
        let engine = engine::build_engine(EngineSizing {
            max_instances: config.max_instances,
            max_memory,
            keep_resident: config.memory_keep_resident,
        })?;
        let loader = AppLoader::new(&engine, &config.code_cache)?;

        let mut pools =
            Pools::open(config).with_context(|| format!("{}: [pools]", config.source.display()))?;
        let mut stores = HashMap::new();
        for (name, store) in &config.stores {
            let backend = Backend::open(name, store, &mut pools)
                .with_context(|| format!("{}: key `stores.{name}`", config.source.display()))?;
            stores.insert(name.clone(), backend);
        }

        let mut router = Router::default();
        for tenant in &config.tenants {
            let runtime = TenantRuntime::new(tenant, &stores, &pools);
            for app in &tenant.apps {
                let loaded = loader
                    .load(
                        runtime.clone(),
                        &app.name,
                        &app.route,
                        Source::File(&app.component),
                    )
                    .with_context(|| {
                        format!("{}: key `{}.component`", config.source.display(), app.key)
                    })?;
                tracing::info!(
                    tenant = %tenant.name,
                    app = %app.name,
                    route = %app.route,
                    hosts = ?tenant.hosts,
                    "app ready"
                );
                router.add(&tenant.hosts, Arc::new(loaded));
            }
        }
        Ok(Host {
            engine,
            router,
            pools,
        })
    }

    /// Connects the pools as configured (see [`Pools::start`]); fails only for a pool that
    /// must be reachable at startup.
    pub async fn start_pools(&self) -> Result<()> {
        self.pools.start().await
    }

    /// Closes the pools; call once requests have drained.
    pub fn close_pools(&self) {
        self.pools.close();
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn router(&self) -> &Router {
        &self.router
    }
}
