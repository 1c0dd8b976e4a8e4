//! The host's connection pools and their lifecycle: one pool per distinct server and settings
//! (two config entries that say the same thing share one), connected at startup or on first
//! use, reconnected in the background, trimmed when idle, closed after requests drain.
//!
//! What a pool lends to guests lives with its capability ([`crate::capabilities::redis`],
//! [`crate::capabilities::postgres`]); this module only decides when pools live and die.

use crate::capabilities::postgres::PostgresPools;
use crate::capabilities::redis::RedisPool;
use crate::config::{Config, Connect, PoolConfig, PoolKind};
use anyhow::{Result, bail};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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

/// Every pool of the host, by config name.
#[derive(Default)]
pub struct Pools {
    redis: HashMap<String, Arc<RedisPool>>,
    postgres: HashMap<String, Arc<PostgresPools>>,
    shared_redis: HashMap<PoolConfig, Arc<RedisPool>>,
    shared_postgres: HashMap<PoolConfig, Arc<PostgresPools>>,
    entries: Vec<Entry>,
}

impl Pools {
    /// Creates (without connecting) the pools of every `[pools]` entry. Refuses to let two
    /// tenants share one PostgreSQL login: each could read the other's tables.
    pub fn open(config: &Config) -> Result<Pools> {
        let mut pools = Pools::default();
        // Tenants granted each pool name.
        let granted = |name: &String| -> BTreeSet<String> {
            config
                .tenants
                .iter()
                .filter(|t| t.pools.contains(name))
                .map(|t| t.name.clone())
                .collect()
        };
        for (name, pool) in &config.pools {
            match pool.kind {
                PoolKind::Redis => {
                    let pool = pools.redis_pool(name, pool)?;
                    pools.redis.insert(name.clone(), pool);
                }
                PoolKind::Postgres => {
                    // Entries with equal settings share one pool: it serves their tenants.
                    let tenants: Vec<String> = config
                        .pools
                        .iter()
                        .filter(|(_, other)| *other == pool)
                        .flat_map(|(other, _)| granted(other))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let pool = shared(
                        &mut pools.shared_postgres,
                        &mut pools.entries,
                        name,
                        pool,
                        |name, config| PostgresPools::open(name, config, &tenants),
                    )?;
                    pools.postgres.insert(name.clone(), pool);
                }
            }
        }
        // Who logs in as whom, across every dedicated pool.
        let mut logins: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<String>)> = BTreeMap::new();
        for (name, pool) in &pools.postgres {
            if let Some(login) = pool.dedicated_login() {
                let (names, tenants) = logins.entry(login).or_default();
                names.insert(name);
                tenants.extend(granted(name));
            }
        }
        for (login, (names, tenants)) in logins {
            if tenants.len() > 1 {
                let names: Vec<&str> = names.into_iter().collect();
                let tenants: Vec<String> = tenants.into_iter().collect();
                bail!(
                    "[pools.{}] log in to PostgreSQL as one user ({login}) and are granted to \
                     tenants {}: each could read and change the others' tables. Give each tenant \
                     a pool of its own login, or replace `url` with `admin_url` so that the host \
                     gives every tenant its own login role and database",
                    names.join("], [pools."),
                    tenants.join(", ")
                );
            }
        }
        Ok(pools)
    }

    /// The Redis pool with these settings: `[pools]` entries and Redis-backed key-value
    /// stores with equal settings get the same one.
    pub fn redis_pool(&mut self, name: &str, config: &PoolConfig) -> Result<Arc<RedisPool>> {
        shared(
            &mut self.shared_redis,
            &mut self.entries,
            name,
            config,
            RedisPool::new,
        )
    }

    pub fn redis(&self) -> &HashMap<String, Arc<RedisPool>> {
        &self.redis
    }

    pub fn postgres(&self) -> &HashMap<String, Arc<PostgresPools>> {
        &self.postgres
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

    /// Closes every pool; called once in-flight requests have drained.
    pub fn close(&self) {
        for entry in &self.entries {
            entry.pool.close();
        }
    }
}

/// The pool for `config` from `pools`, created (and tracked for the lifecycle) if it is the
/// first entry with these settings.
fn shared<P: ServerPool>(
    pools: &mut HashMap<PoolConfig, Arc<P>>,
    entries: &mut Vec<Entry>,
    name: &str,
    config: &PoolConfig,
    create: impl FnOnce(&str, &PoolConfig) -> Result<Arc<P>>,
) -> Result<Arc<P>> {
    if let Some(pool) = pools.get(config) {
        if let Some(entry) = entries.iter_mut().find(|e| &e.config == config) {
            entry.names.push(name.to_string());
        }
        return Ok(pool.clone());
    }
    let pool = create(name, config)?;
    pools.insert(config.clone(), pool.clone());
    entries.push(Entry {
        pool: pool.clone(),
        config: config.clone(),
        names: vec![name.to_string()],
    });
    Ok(pool)
}

/// Builds a deadpool pool (Redis leases, PostgreSQL connections) with the configured size and
/// timeouts: waiting for a free connection, opening one and checking one before reuse each get
/// the acquire timeout.
pub fn build_deadpool<M, W>(
    builder: deadpool::managed::PoolBuilder<M, W>,
    config: &PoolConfig,
) -> Result<deadpool::managed::Pool<M, W>>
where
    M: deadpool::managed::Manager,
    W: From<deadpool::managed::Object<M>>,
{
    Ok(builder
        .max_size(config.max_connections as usize)
        .wait_timeout(Some(config.acquire_timeout))
        .create_timeout(Some(config.acquire_timeout))
        .recycle_timeout(Some(config.acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?)
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
