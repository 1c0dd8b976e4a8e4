//! Hostel: a WebAssembly component hosting runtime.
//!
//! One process owns the long-lived things — compiled code, pools, clients — and lends them to
//! short-lived guests: HTTP handler components that get a fresh sandbox for every request.
//!
//! The request path, in file order: [`server`] (accept, HTTP/1.1 + h2c) → [`request`] (request
//! id, error responses) → [`router`] (Host + path prefix) → [`admission`] (concurrency, body
//! size) → [`sandbox`] (new `Store`, limits, deadline, guest call). Loaded once at startup:
//! [`config`], [`engine`], [`code_cache`], [`apps`], [`capabilities`].

pub mod admin;
pub mod admission;
pub mod apps;
pub mod capabilities;
pub mod code_cache;
pub mod config;
pub mod engine;
pub mod fair_share;
pub mod measure;
pub mod pools;
pub mod request;
pub mod request_id;
pub mod router;
pub mod routes;
pub mod sandbox;
pub mod secrets;
pub mod server;
pub mod tls;

use admin::deployments::Deployment;
use anyhow::{Context, Result};
use apps::{App, AppLoader, Source, TenantRuntime};
use arc_swap::ArcSwap;
use capabilities::keyvalue::Backend;
use config::Config;
use engine::EngineSizing;
use pools::Pools;
use router::Router;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wasmtime::Engine;

/// Everything a running host shares between requests.
pub struct Host {
    engine: Engine,
    /// Swapped whole when the set of apps changes: a request routes on the router it loaded,
    /// so it finishes on the app version it started with.
    router: ArcSwap<Router>,
    pools: Pools,
    tenants: HashMap<String, Arc<TenantRuntime>>,
    loader: AppLoader,
    /// Every app being served, by (tenant, app name).
    installed: Mutex<BTreeMap<AppKey, Installed>>,
    /// Every host some tenant lists: served by its tenants only (see [`router`]).
    listed_hosts: Vec<String>,
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
    /// Deployed through the admin API; persisted in the deployment manifest.
    Deployed(Deployment),
}

impl Host {
    /// Builds the engine and loads every app in the configuration. Fails on the first app that
    /// cannot be served, naming its config key and file.
    pub fn load(config: &Config) -> Result<Host> {
        tls::install_crypto_provider();
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

        let mut tenants = HashMap::new();
        let mut installed = BTreeMap::new();
        let cpu_slots = fair_share::cpu_slots(config.tenants.len());
        for tenant in &config.tenants {
            let runtime = TenantRuntime::new(tenant, &stores, &pools, cpu_slots);
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
                installed.insert(
                    (tenant.name.clone(), app.name.clone()),
                    Installed {
                        app: Arc::new(loaded),
                        origin: Origin::Config(app.component.clone()),
                    },
                );
            }
            tenants.insert(tenant.name.clone(), runtime);
        }
        let listed_hosts: Vec<String> = config
            .tenants
            .iter()
            .flat_map(|t| t.hosts.iter().cloned())
            .collect();
        let router = Router::new(
            installed.values().map(|i: &Installed| i.app.clone()),
            &listed_hosts,
        );
        Ok(Host {
            engine,
            router: ArcSwap::from_pointee(router),
            pools,
            tenants,
            loader,
            installed: Mutex::new(installed),
            listed_hosts,
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

    /// The router of this moment. Hold it only for one lookup.
    pub fn router(&self) -> arc_swap::Guard<Arc<Router>> {
        self.router.load()
    }

    pub fn tenant(&self, name: &str) -> Option<&Arc<TenantRuntime>> {
        self.tenants.get(name)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<TenantRuntime>> {
        self.tenants.values()
    }

    pub fn loader(&self) -> &AppLoader {
        &self.loader
    }

    /// Every app being served, in (tenant, app) order.
    pub fn installed(&self) -> Vec<(AppKey, Installed)> {
        let installed = self.installed.lock().expect("app set lock");
        installed
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Serves `app` from now on, replacing the app of the same tenant and name; returns what
    /// it replaced. Requests already routed finish on the old version.
    pub fn install(&self, key: AppKey, app: Installed) -> Option<Installed> {
        self.change_apps(|apps| apps.insert(key, app))
    }

    /// Stops routing to an app; requests already routed to it finish.
    pub fn uninstall(&self, key: &AppKey) -> Option<Installed> {
        self.change_apps(|apps| apps.remove(key))
    }

    fn change_apps<T>(&self, change: impl FnOnce(&mut BTreeMap<AppKey, Installed>) -> T) -> T {
        let mut installed = self.installed.lock().expect("app set lock");
        let result = change(&mut installed);
        self.router.store(Arc::new(Router::new(
            installed.values().map(|i| i.app.clone()),
            &self.listed_hosts,
        )));
        result
    }
}
