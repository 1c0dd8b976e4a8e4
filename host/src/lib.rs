//! Hostel: a WebAssembly component hosting runtime.
//!
//! One process owns the long-lived things — compiled code, pools, clients — and lends them to
//! short-lived guests: HTTP handler components that get a fresh sandbox for every request.
//!
//! The request path, in file order: [`server`] (accept, HTTP/1.1 + h2c) → [`request`] (request
//! id, admission, error responses) → [`router`] (Host + path prefix) → [`body`] (size limits)
//! → [`sandbox`] (new `Store`, limits, deadline, guest call). Loaded once at startup:
//! [`config`] (assembled from [`sections`]), [`engine`], [`code_cache`], [`apps`], [`tenant`]
//! and [`capabilities`], each in the one shape of [`capabilities::shape`]. The admin API
//! ([`admin`]) builds on the host; nothing in the core imports it. Operating it: [`health`]
//! (liveness, readiness, draining), [`access`] (the one log line per request) and
//! [`traces`] (OpenTelemetry spans and W3C trace context, when an exporter is installed).

pub mod access;
pub mod admin;
pub mod apps;
pub mod body;
pub mod capabilities;
pub mod cluster;
pub mod code_cache;
pub mod config;
pub mod engine;
pub mod fair_share;
pub mod health;
pub mod limits;
pub mod measure;
pub mod metrics;
pub mod names;
pub mod request;
pub mod request_id;
pub mod router;
pub mod routes;
pub mod sandbox;
pub mod secrets;
pub mod sections;
pub mod server;
pub mod tenant;
pub mod tls;
pub mod traces;
pub mod units;
pub mod usage;

use anyhow::{Context, Result};
use apps::{AppKey, AppLoader, Deployment, Installed, Origin, Source};
use arc_swap::ArcSwap;
use capabilities::AppCapabilities;
use capabilities::servers::Servers;
use config::Config;
use engine::EngineSizing;
use health::Readiness;
use router::Router;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tenant::Tenant;

/// Everything a running host shares between requests.
pub struct Host {
    engines: engine::Engines,
    /// Swapped whole when the set of apps changes: a request routes on the router it loaded,
    /// so it finishes on the app version it started with.
    router: ArcSwap<Router>,
    /// The servers the capabilities keep connections to, for their lifecycle.
    servers: Servers,
    tenants: HashMap<String, Arc<Tenant>>,
    loader: AppLoader,
    /// Every app being served, by (tenant, app name).
    installed: Mutex<BTreeMap<AppKey, Installed>>,
    /// Every host some tenant lists: served by its tenants only (see [`router`]).
    listed_hosts: Vec<String>,
    metrics: Arc<metrics::Metrics>,
    /// Where requests no app took are counted.
    unrouted: Arc<metrics::AppMeter>,
    readiness: Readiness,
    /// `server.access_log`: one line per request (see [`access`]).
    access_log: bool,
    /// `[cluster]`'s NATS connection (shared with `kind = "nats"` stores of equal settings).
    cluster_nats: Option<Arc<capabilities::nats::NatsServer>>,
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
            .unwrap_or(limits::DEFAULT_MEMORY);
        let engines = engine::Engines::build(EngineSizing {
            max_instances: config.max_instances,
            max_memory,
            keep_resident: config.memory_keep_resident,
        })?;
        let metrics = metrics::Metrics::counting_requests(config.metrics.enabled);
        let loader = AppLoader::new(&engines, &config.code_cache, metrics.clone())?;

        let mut servers = Servers::new(metrics.clone());
        let cluster_nats = (config.cluster.as_ref())
            .map(|cluster| {
                capabilities::nats::NatsServer::shared(&mut servers, "cluster", &cluster.nats)
            })
            .transpose()?;
        let grants: Vec<_> = (config.tenants.iter())
            .map(|t| (t.name.as_str(), &t.grants))
            .collect();
        // App-lifetime state lives on in the tenants that hold it, and in `servers`.
        let capabilities = AppCapabilities::new(&config.capabilities, &grants, &mut servers)
            .with_context(|| config.source.display().to_string())?;

        let mut tenants = HashMap::new();
        let mut installed = BTreeMap::new();
        let cpu_slots = fair_share::cpu_slots(config.tenants.len());
        for tenant in &config.tenants {
            let runtime = Tenant::new(tenant, &capabilities, cpu_slots, &metrics)
                .with_context(|| config.source.display().to_string())?;
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
        let readiness = Readiness::new(servers.required());
        if config.cluster.is_some() {
            readiness.expect_catch_up();
        }
        Ok(Host {
            engines,
            cluster_nats,
            router: ArcSwap::from_pointee(router),
            readiness,
            servers,
            tenants,
            loader,
            installed: Mutex::new(installed),
            listed_hosts,
            unrouted: metrics.unrouted(),
            metrics,
            access_log: config.access_log,
        })
    }

    /// Connects the pools as configured (see [`Servers::start`]); fails only for a pool that
    /// must be reachable at startup.
    pub async fn start_pools(&self) -> Result<()> {
        self.servers.start().await
    }

    /// Closes the pools; call once requests have drained.
    pub fn close_pools(&self) {
        self.servers.close();
    }

    pub fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.metrics
    }

    /// Where a request no app took is counted.
    pub fn unrouted(&self) -> &Arc<metrics::AppMeter> {
        &self.unrouted
    }

    /// Whether the host should get traffic: what `/readyz` answers, and what a drain flips.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    pub fn access_log(&self) -> bool {
        self.access_log
    }

    pub fn engines(&self) -> &engine::Engines {
        &self.engines
    }

    /// The router of this moment. Hold it only for one lookup.
    pub fn router(&self) -> arc_swap::Guard<Arc<Router>> {
        self.router.load()
    }

    pub fn tenant(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(name)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
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

    /// Loads a deployed app from its component's bytes; `None`, with a warning, when its
    /// tenant is no longer in the config (the deployment is then dropped at the next change).
    pub fn load_deployed(
        &self,
        deployment: &Deployment,
        bytes: &[u8],
    ) -> Result<Option<Installed>> {
        let Some(tenant) = self.tenant(&deployment.tenant).cloned() else {
            tracing::warn!(
                tenant = %deployment.tenant,
                app = %deployment.app,
                "not serving a deployed app: its tenant is not in the config"
            );
            return Ok(None);
        };
        let app = self
            .loader
            .load(
                tenant,
                &deployment.app,
                &deployment.route,
                Source::Bytes(bytes),
            )
            .with_context(|| {
                format!(
                    "deployed app {}/{} (component sha256:{})",
                    deployment.tenant, deployment.app, deployment.digest
                )
            })?;
        tracing::info!(tenant = %deployment.tenant, app = %deployment.app, route = %deployment.route, "deployed app ready");
        Ok(Some(Installed {
            app: Arc::new(app),
            origin: Origin::Deployed(deployment.clone()),
        }))
    }

    /// `[cluster]`'s NATS connection, in cluster mode.
    pub fn cluster_nats(&self) -> Option<&Arc<capabilities::nats::NatsServer>> {
        self.cluster_nats.as_ref()
    }

    /// Installs and removes several apps with one router swap: a request sees the set before
    /// or the set after, never a part of the change.
    pub fn change(&self, changes: Vec<(AppKey, Option<Installed>)>) {
        self.change_apps(|apps| {
            for (key, app) in changes {
                match app {
                    Some(app) => apps.insert(key, app),
                    None => apps.remove(&key),
                };
            }
        })
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
