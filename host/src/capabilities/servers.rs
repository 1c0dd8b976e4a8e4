//! The servers behind the capabilities — Redis and PostgreSQL, `[pools]` in the config — and
//! the life of their connection pools: one pool per distinct server and settings (entries that
//! say the same thing share one), connected at startup or on first use, reconnected in the
//! background, trimmed when idle, closed after requests drain.
//!
//! What a pool lends to guests lives with its capability (`redis`, `postgres`); here is only
//! when pools live and die, and the `[pools]` section they are configured by.

use super::grants::granted_names;
use crate::metrics::{Metrics, PoolMeter};
use crate::names;
use crate::secrets::{Secret, redact_url};
use crate::sections::Table;
use crate::tls::CaFile;
use crate::units::HumanDuration;
use anyhow::{Context, Result, bail};
use deadpool::managed::{Manager, Pool, RecycleResult};
use serde::Deserialize;
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A `[pools.NAME]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    pub kind: PoolKind,
    /// `redis://[user:password@]host:port[/db]` or `postgres://user[:password]@host[:port]/db`:
    /// the login every statement uses. A PostgreSQL pool with a `url` serves one tenant.
    pub url: Option<Secret<String>>,
    /// PostgreSQL only, instead of `url`: an administrative login (CREATEROLE and CREATEDB)
    /// through which the host gives every tenant granted the pool a login role and a database
    /// of its own, so that tenants sharing the pool cannot reach each other's objects.
    pub admin_url: Option<Secret<String>>,
    /// A PEM file of the CA certificate(s) that sign the server's certificate, trusted
    /// instead of the public roots (relative to the config file).
    pub ca_file: Option<PathBuf>,
    /// Connections open at most: for PostgreSQL every query's (per tenant with `admin_url`);
    /// for Redis those leased for transactions (plain commands share one multiplexed
    /// connection).
    pub max_connections: Option<u32>,
    /// How long a request waits for a free connection before it gets an error.
    pub acquire_timeout: Option<HumanDuration>,
    /// Connections unused this long are closed.
    pub idle_timeout: Option<HumanDuration>,
    /// When to connect; see [`Connect`].
    pub connect: Option<Connect>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    Redis,
    Postgres,
    /// Not a `[pools]` kind: the server of `kind = "nats"` stores and `[cluster]`
    /// ([`super::nats`]).
    Nats,
}

/// When a pool connects to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Connect {
    /// At startup; if the server is unreachable, warn, serve anyway and retry in the background.
    #[default]
    Eager,
    /// On first use.
    Lazy,
    /// At startup; if the server is unreachable, refuse to start.
    Required,
}

/// Whose login a pool's connections use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tenancy {
    /// The login in `url`, for the one tenant granted the pool (Redis: every tenant granted
    /// it, with keys namespaced by the host).
    Dedicated,
    /// A login role and database per tenant, provisioned through the admin login in `url`.
    PerTenant,
}

/// A pool after validation. Two entries with equal `PoolConfig`s share one pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolConfig {
    pub kind: PoolKind,
    /// The login: dedicated, or the admin login of a [`Tenancy::PerTenant`] pool.
    pub url: Secret<String>,
    pub tenancy: Tenancy,
    pub ca: Option<CaFile>,
    /// NATS only: a credentials file's text (JWT and NKey seed).
    pub credentials: Option<Secret<String>>,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect: Connect,
}

pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl PoolSection {
    /// Validates the entry; paths are relative to `base`, the config file's folder.
    pub fn resolve(self, base: &Path) -> Result<PoolConfig> {
        if self.kind == PoolKind::Nats {
            bail!(
                "key `kind`: NATS is not lent to guests as a pool; use it for a key-value \
                 store (`[stores.NAME] kind = \"nats\"`) or for `[cluster]`"
            );
        }
        let (url, tenancy) = match (self.url, self.admin_url, self.kind) {
            (Some(url), None, _) => (url, Tenancy::Dedicated),
            (None, Some(url), PoolKind::Postgres) => (url, Tenancy::PerTenant),
            (None, Some(_), PoolKind::Redis | PoolKind::Nats) => bail!(
                "key `admin_url`: only PostgreSQL pools take an admin login (Redis keys are \
                 namespaced per tenant by the host): use `url`"
            ),
            (Some(_), Some(_), _) => bail!(
                "keys `url` and `admin_url`: give one — `url` for a pool one tenant uses, \
                 `admin_url` for a pool tenants share with a login and database each"
            ),
            (None, None, _) => bail!("key `url`: missing (the server to connect to)"),
        };
        let key = match tenancy {
            Tenancy::Dedicated => "url",
            Tenancy::PerTenant => "admin_url",
        };
        check_url_scheme(self.kind, url.expose(), key)?;
        let max_connections = self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            bail!("key `max_connections`: must be at least 1");
        }
        let ca = self
            .ca_file
            .map(|path| CaFile::read(&base.join(path)))
            .transpose()
            .context("key `ca_file`")?;
        Ok(PoolConfig {
            kind: self.kind,
            url,
            tenancy,
            ca,
            credentials: None,
            max_connections,
            acquire_timeout: self
                .acquire_timeout
                .map_or(DEFAULT_ACQUIRE_TIMEOUT, |d| d.0),
            idle_timeout: self.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0),
            connect: self.connect.unwrap_or_default(),
        })
    }
}

/// Checks that `url` has a scheme a pool of `kind` speaks; `key` names it in the error.
pub fn check_url_scheme(kind: PoolKind, url: &str, key: &str) -> Result<()> {
    let schemes: &[&str] = match kind {
        PoolKind::Redis => &["redis://", "rediss://"],
        PoolKind::Postgres => &["postgres://", "postgresql://"],
        PoolKind::Nats => &["nats://", "tls://"],
    };
    if !schemes.iter().any(|s| url.starts_with(s)) {
        bail!(
            "key `{key}`: {:?} is not a {} URL for a {kind:?} pool",
            redact_url(url),
            schemes.join(" or "),
        );
    }
    Ok(())
}

impl PoolConfig {
    /// A Redis pool at `url` with every setting at its default.
    pub fn redis(url: Secret<String>, ca: Option<CaFile>) -> PoolConfig {
        PoolConfig {
            kind: PoolKind::Redis,
            url,
            tenancy: Tenancy::Dedicated,
            ca,
            credentials: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect: Connect::default(),
        }
    }

    /// The server's address with any password left out, for log lines and errors.
    pub fn address(&self) -> String {
        redact_url(self.url.expose())
    }
}

/// Parses the `[pools]` section: every entry, validated, by name.
pub fn parse_pools(
    section: BTreeMap<String, PoolSection>,
    base: &Path,
) -> Result<BTreeMap<String, PoolConfig>> {
    section
        .into_iter()
        .map(|(name, entry)| {
            names::check(&name, &format!("pools.{name}"))?;
            let pool = entry
                .resolve(base)
                .with_context(|| format!("in [pools.{name}]"))?;
            Ok((name, pool))
        })
        .collect()
}

/// The `[pools]` entries of one kind, by name.
pub fn of_kind(
    pools: &BTreeMap<String, PoolConfig>,
    kind: PoolKind,
) -> BTreeMap<String, PoolConfig> {
    pools
        .iter()
        .filter(|(_, pool)| pool.kind == kind)
        .map(|(name, pool)| (name.clone(), pool.clone()))
        .collect()
}

/// A tenant's `grants.pools`: names of `[pools]` entries, of any kind (the Redis and the
/// PostgreSQL capability each take theirs).
pub fn granted_pools(
    grants: &Table<'_>,
    pools: &BTreeMap<String, PoolConfig>,
) -> Result<Vec<String>> {
    granted_names(grants, "pools", "pool", "pools", pools)
}

/// What the lifecycle needs of a pool, whatever its server.
pub trait ServerPool: Send + Sync + 'static {
    /// Makes sure the server answers (opening the pool's first connection if need be).
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>>;
    /// Closes connections unused for longer than the configured idle timeout.
    fn reap_idle(&self);
    /// Closes every connection; leases still out are closed when they come back.
    fn close(&self);
}

/// A distinct pool, with the config names that share it.
struct Entry {
    pool: Arc<dyn ServerPool>,
    config: PoolConfig,
    names: Vec<String>,
}

/// Every server pool the capabilities opened, shared between config entries with equal
/// settings, and their lifecycle.
pub struct Servers {
    /// By pool type and settings.
    shared: HashMap<(TypeId, PoolConfig), Arc<dyn Any + Send + Sync>>,
    entries: Vec<Entry>,
    /// Where pools count their connections and waits.
    metrics: Arc<Metrics>,
}

impl Servers {
    pub fn new(metrics: Arc<Metrics>) -> Servers {
        Servers {
            shared: HashMap::new(),
            entries: Vec::new(),
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The pool of type `P` with these settings: made by `create` for the first entry that
    /// names them, the same one for the others.
    pub fn shared<P: ServerPool>(
        &mut self,
        name: &str,
        config: &PoolConfig,
        create: impl FnOnce(&str, &PoolConfig, &Arc<Metrics>) -> Result<Arc<P>>,
    ) -> Result<Arc<P>> {
        let key = (TypeId::of::<P>(), config.clone());
        if let Some(pool) = self.shared.get(&key) {
            if let Some(entry) = self.entries.iter_mut().find(|e| &e.config == config) {
                entry.names.push(name.to_string());
            }
            return Ok(pool.clone().downcast().expect("keyed by its type"));
        }
        let pool = create(name, config, &self.metrics)?;
        self.shared.insert(key, pool.clone());
        self.entries.push(Entry {
            pool: pool.clone(),
            config: config.clone(),
            names: vec![name.to_string()],
        });
        Ok(pool)
    }

    /// Makes `check` part of checking the pool with these settings, after the pool's own: at
    /// startup as its `connect` says, and by readiness when `required` — for what a user of a
    /// shared server needs beyond the server answering (a NATS store's bucket). Closed with it.
    pub fn also_check(&mut self, config: &PoolConfig, check: Arc<dyn ServerPool>) {
        if let Some(entry) = self.entries.iter_mut().find(|e| &e.config == config) {
            entry.pool = Arc::new(Both(entry.pool.clone(), check));
        }
    }

    /// Connects the pools as configured: `required` ones now (an error stops the host),
    /// `eager` ones in the background (a warning naming the pool and address while the server
    /// is unreachable, retried until it answers). Also starts the idle reaper.
    pub async fn start(&self) -> Result<()> {
        for entry in &self.entries {
            let names = entry.names.join(", ");
            let address = entry.config.address();
            match entry.config.connect {
                Connect::Required => {
                    if let Err(e) = entry.pool.check().await {
                        bail!(
                            "pool {names} ({address}) is unreachable and configured with \
                             connect = \"required\": {e:#}"
                        );
                    }
                    tracing::info!(pool = %names, %address, "connected");
                }
                Connect::Eager => {
                    let pool = entry.pool.clone();
                    tokio::spawn(connect_in_background(pool, names, address));
                }
                Connect::Lazy => {}
            }
            let pool = Arc::downgrade(&entry.pool);
            let idle = entry.config.idle_timeout;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval((idle / 4).max(Duration::from_secs(1)));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(pool) = pool.upgrade() else { break };
                    pool.reap_idle();
                }
            });
        }
        Ok(())
    }

    /// The pools configured `connect = "required"` — (config names, redacted address, pool) —
    /// which the host is not ready without, checked again by every readiness probe.
    pub fn required(&self) -> Vec<(String, String, Arc<dyn ServerPool>)> {
        (self.entries.iter())
            .filter(|entry| entry.config.connect == Connect::Required)
            .map(|entry| {
                let names = entry.names.join(", ");
                (names, entry.config.address(), entry.pool.clone())
            })
            .collect()
    }

    /// Closes every pool; called once in-flight requests have drained.
    pub fn close(&self) {
        for entry in &self.entries {
            entry.pool.close();
        }
    }
}

/// Two checks as one pool: the first, then the second.
struct Both(Arc<dyn ServerPool>, Arc<dyn ServerPool>);

impl ServerPool for Both {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            self.0.check().await?;
            self.1.check().await
        })
    }

    fn reap_idle(&self) {
        self.0.reap_idle();
        self.1.reap_idle();
    }

    fn close(&self) {
        self.0.close();
        self.1.close();
    }
}

/// Builds a deadpool pool (Redis leases, PostgreSQL connections) with the configured size and
/// timeouts: waiting for a free connection, opening one and checking one before reuse each get
/// the acquire timeout. Its connections are counted in `meter`.
pub fn build_deadpool<M: Manager>(
    manager: M,
    config: &PoolConfig,
    meter: &PoolMeter,
) -> Result<Pool<Metered<M>>> {
    let manager = Metered {
        inner: manager,
        meter: meter.clone(),
        broke: AtomicBool::new(false),
    };
    Ok(Pool::builder(manager)
        .max_size(config.max_connections as usize)
        .wait_timeout(Some(config.acquire_timeout))
        .create_timeout(Some(config.acquire_timeout))
        .recycle_timeout(Some(config.acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?)
}

/// A pool's connection manager, counting the connections it opens: one opened after a
/// connection failed its check before reuse is a reconnect.
pub struct Metered<M> {
    inner: M,
    meter: PoolMeter,
    broke: AtomicBool,
}

impl<M: Manager> Manager for Metered<M> {
    type Type = M::Type;
    type Error = M::Error;

    async fn create(&self) -> Result<M::Type, M::Error> {
        let _opening = self
            .meter
            .opening(self.broke.swap(false, Ordering::Relaxed));
        let created = self.inner.create().await;
        if created.is_err() {
            self.meter.failed();
        }
        created
    }

    async fn recycle(
        &self,
        connection: &mut M::Type,
        metrics: &deadpool::managed::Metrics,
    ) -> RecycleResult<M::Error> {
        let recycled = self.inner.recycle(connection, metrics).await;
        if recycled.is_err() {
            self.broke.store(true, Ordering::Relaxed);
        }
        recycled
    }

    fn detach(&self, connection: &mut M::Type) {
        self.inner.detach(connection);
    }
}

/// Retries until the server answers, with a capped backoff; warns once, then says when the
/// pool is up. Requests that need the pool meanwhile get an `unavailable` error.
async fn connect_in_background(pool: Arc<dyn ServerPool>, names: String, address: String) {
    let mut delay = Duration::from_millis(250);
    let mut warned = false;
    loop {
        match pool.check().await {
            Ok(()) => {
                if warned {
                    tracing::info!(pool = %names, %address, "reachable again");
                } else {
                    tracing::debug!(pool = %names, %address, "connected");
                }
                return;
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(
                    pool = %names,
                    %address,
                    "unreachable at startup ({e:#}); serving anyway, requests that use it get \
                     an error until it answers; retrying in the background"
                );
            }
            Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
