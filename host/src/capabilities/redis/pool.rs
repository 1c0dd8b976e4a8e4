//! One Redis pool: a multiplexed connection that plain commands from every request share
//! (pipelined, no checkout), and a bounded set of connections leased one at a time for
//! transactions and blocking commands.
//!
//! A leased connection goes back to its next borrower as a new one would be: before reuse
//! the pool sends `RESET` (which ends a MULTI, drops WATCHes, leaves subscribed or monitor
//! state, clears the client name and selects database 0), then logs in and selects the
//! configured database again. `rediss://` URLs connect over TLS (rustls), checking the
//! server's certificate against the public roots or the pool's `ca_file`.

use crate::capabilities::servers::{Metered, PoolConfig, ServerPool, build_deadpool};
use crate::metrics::{Metrics, PoolGauges, PoolMeter};
use crate::tls;
use anyhow::{Context, Result, anyhow, bail};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, ProtocolVersion, RedisError};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a plain command on the shared connection may wait for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection leased from the pool.
pub type Leased = deadpool::managed::Object<Metered<LeaseManager>>;

pub struct RedisPool {
    name: String,
    config: PoolConfig,
    client: redis::Client,
    shared: OnceCell<ConnectionManager>,
    leased: deadpool::managed::Pool<Metered<LeaseManager>>,
    closed: AtomicBool,
    meter: PoolMeter,
}

impl RedisPool {
    pub fn new(name: &str, config: &PoolConfig, metrics: &Arc<Metrics>) -> Result<Arc<RedisPool>> {
        let client = client(config).with_context(|| {
            format!(
                "invalid Redis URL for pool {name:?} ({}): expected \
                 redis[s]://[user:password@]host:port[/db]",
                config.address()
            )
        })?;
        // Leased connections have no response timeout of their own: a blocking command may
        // wait as long as it asked, bounded by the request's deadline.
        let manager = LeaseManager {
            client: client.clone(),
            connection: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.acquire_timeout))
                .set_response_timeout(None),
            pings: AtomicU64::new(0),
        };
        let meter = metrics.pool(name);
        let leased = build_deadpool(manager, config, &meter)
            .with_context(|| format!("cannot create Redis pool {name:?}"))?;
        let pool = Arc::new(RedisPool {
            name: name.to_string(),
            config: config.clone(),
            client,
            shared: OnceCell::new(),
            leased,
            closed: AtomicBool::new(false),
            meter,
        });
        let gauges: Arc<dyn PoolGauges> = pool.clone();
        metrics.watch_pool(&pool.meter, Arc::downgrade(&gauges));
        Ok(pool)
    }

    /// The connection every request's plain commands share. Made on first use (or by the
    /// startup check) and remade by `ConnectionManager` after failures.
    pub async fn shared(&self) -> Result<ConnectionManager> {
        self.check_open()?;
        let manager = self
            .shared
            .get_or_try_init(|| async {
                let _opening = self.meter.opening(false);
                // One attempt per call: the caller (a request, or the background reconnect
                // loop) decides when to try again.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_max_delay(Duration::from_millis(500))
                    .set_connection_timeout(Some(self.config.acquire_timeout))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                tokio::time::timeout(
                    self.config.acquire_timeout,
                    ConnectionManager::new_with_config(self.client.clone(), config),
                )
                .await
                .map_err(|_| anyhow!("timed out connecting"))?
                .map_err(explained)
            })
            .await
            .inspect_err(|_| self.meter.failed())
            .with_context(|| self.unavailable())?;
        Ok(manager.clone())
    }

    /// A connection of its own, until the lease is dropped. Waits up to the acquire timeout
    /// for one to come free.
    pub async fn lease(&self) -> Result<Leased> {
        self.check_open()?;
        let asked = std::time::Instant::now();
        let leased = self.leased.get().await;
        self.meter.waited(asked.elapsed());
        leased
            .inspect_err(|_| self.meter.failed())
            .map_err(|e| match e {
                deadpool::managed::PoolError::Backend(e) => explained(e),
                other => anyhow!("{other}"),
            })
            .with_context(|| self.unavailable())
    }

    /// A call found the server gone (on the shared connection: see `RedisHandle`).
    pub fn failed(&self) {
        self.meter.failed();
    }

    fn unavailable(&self) -> String {
        format!(
            "Redis pool {:?} ({}) unavailable",
            self.name,
            self.config.address()
        )
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            bail!(
                "Redis pool {:?} is closed: the host is shutting down",
                self.name
            );
        }
        Ok(())
    }
}

/// The client for a pool's URL, with its CA file as the trusted roots when it names one.
fn client(config: &PoolConfig) -> Result<redis::Client> {
    let url = config.url.expose().as_str();
    match &config.ca {
        None => Ok(redis::Client::open(url)?),
        Some(ca) => {
            if !url.starts_with("rediss://") {
                bail!(
                    "`ca_file` is set, but the URL is not rediss:// (TLS): use rediss:// or drop \
                     `ca_file`"
                );
            }
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.pem.clone()),
            };
            Ok(redis::Client::build_with_tls(url, certificates)?)
        }
    }
}

/// A Redis error, with what to do about a TLS failure inside it.
fn explained(e: RedisError) -> anyhow::Error {
    match tls::explain(&e) {
        Some(tls) => anyhow!("{tls}"),
        None => anyhow::Error::from(e),
    }
}

/// Opens leased connections and resets them before they are lent again.
pub struct LeaseManager {
    client: redis::Client,
    connection: AsyncConnectionConfig,
    pings: AtomicU64,
}

impl deadpool::managed::Manager for LeaseManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.connection)
            .await
    }

    /// `RESET`, then the login and database of the URL again, then a PING that must come back.
    async fn recycle(
        &self,
        connection: &mut MultiplexedConnection,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<RedisError> {
        let info = self.client.get_connection_info().redis_settings();
        let mut reset = redis::pipe();
        reset.cmd("RESET").ignore();
        let user = info.username().unwrap_or("default");
        if info.protocol() == ProtocolVersion::RESP3 {
            reset.cmd("HELLO").arg(3);
            if let Some(password) = info.password() {
                reset.arg("AUTH").arg(user).arg(password);
            }
            reset.ignore();
        } else if let Some(password) = info.password() {
            reset.cmd("AUTH").arg(user).arg(password).ignore();
        }
        if info.db() != 0 {
            reset.cmd("SELECT").arg(info.db()).ignore();
        }
        let ping = self.pings.fetch_add(1, Ordering::Relaxed).to_string();
        reset.cmd("PING").arg(&ping);
        let (pong,): (String,) = reset.query_async(connection).await?;
        if pong == ping {
            Ok(())
        } else {
            Err(deadpool::managed::RecycleError::message(
                "the connection answered out of turn after RESET",
            ))
        }
    }
}

impl PoolGauges for RedisPool {
    /// Leased connections; the shared one counts as in use once made.
    fn connections(&self) -> (u64, u64) {
        let status = self.leased.status();
        let idle = status.available as u64;
        let shared = u64::from(self.shared.initialized());
        ((status.size as u64).saturating_sub(idle) + shared, idle)
    }
}

impl ServerPool for RedisPool {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            let () = redis::cmd("PING")
                .query_async::<String>(&mut self.shared().await?)
                .await
                .map(drop)?;
            Ok(())
        })
    }

    fn reap_idle(&self) {
        let idle = self.config.idle_timeout;
        self.leased.retain(|_, metrics| metrics.last_used() < idle);
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.leased.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;
    use redis::AsyncCommands;

    /// One `field=value` of `CLIENT INFO`.
    fn field(info: &str, name: &str) -> String {
        info.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn a_leased_connection_comes_back_reset_logged_in_and_on_its_database() {
        tls::install_crypto_provider();
        let server = hostel_tests::RedisServer::start_with_password("pw").unwrap();
        let mut config = PoolConfig::redis(Secret::new(format!("{}/2", server.url())), None);
        config.max_connections = 1;
        let pool = RedisPool::new("test", &config, &Metrics::new()).unwrap();
        {
            let mut lease = pool.lease().await.unwrap();
            let connection: &mut MultiplexedConnection = &mut lease;
            let () = connection.set("k", "v").await.unwrap();
            let () = redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg("evil")
                .query_async(connection)
                .await
                .unwrap();
            let () = redis::cmd("WATCH")
                .arg("k")
                .query_async(connection)
                .await
                .unwrap();
            let () = redis::cmd("SELECT")
                .arg(5)
                .query_async(connection)
                .await
                .unwrap();
            let () = redis::cmd("MULTI").query_async(connection).await.unwrap();
            let queued: String = redis::cmd("SET")
                .arg("k")
                .arg("lost")
                .query_async(connection)
                .await
                .unwrap();
            assert_eq!(queued, "QUEUED");
        }
        let mut again = pool.lease().await.unwrap();
        let connection: &mut MultiplexedConnection = &mut again;
        let info: String = redis::cmd("CLIENT")
            .arg("INFO")
            .query_async(connection)
            .await
            .unwrap();
        assert_eq!(field(&info, "db"), "2", "{info}");
        assert_eq!(field(&info, "name"), "", "{info}");
        assert_eq!(field(&info, "multi"), "-1", "{info}");
        if info.contains(" watch=") {
            // Redis 7.4 and later report it.
            assert_eq!(field(&info, "watch"), "0", "{info}");
        }
        let value: String = connection.get("k").await.unwrap();
        assert_eq!(
            value, "v",
            "logged in again, on database 2, the queued SET never ran"
        );
    }
}
