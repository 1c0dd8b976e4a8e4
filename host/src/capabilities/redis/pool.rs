//! One Redis pool: a multiplexed connection that plain commands from every request share
//! (pipelined, no checkout), and a bounded set of connections leased one at a time for
//! transactions and blocking commands.

use crate::config::PoolConfig;
use crate::pools::ServerPool;
use anyhow::{Context, Result, anyhow, bail};
use deadpool_redis::{Connection, Manager, Pool};
use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a plain command on the shared connection may wait for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RedisPool {
    name: String,
    config: PoolConfig,
    client: redis::Client,
    shared: OnceCell<ConnectionManager>,
    leased: Pool,
    closed: AtomicBool,
}

impl RedisPool {
    pub fn new(name: &str, config: &PoolConfig) -> Result<Arc<RedisPool>> {
        let client = redis::Client::open(config.url.as_str())
            .with_context(|| format!("invalid Redis URL for pool {name:?}"))?;
        // Leased connections have no response timeout of their own: a blocking command may
        // wait as long as it asked, bounded by the request's deadline.
        let leased_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.acquire_timeout))
            .set_response_timeout(None);
        let manager = Manager::new_with_config(config.url.as_str(), leased_config)
            .with_context(|| format!("invalid Redis URL for pool {name:?}"))?;
        let leased = crate::pools::build_deadpool(Pool::builder(manager), config)
            .with_context(|| format!("cannot create Redis pool {name:?}"))?;
        Ok(Arc::new(RedisPool {
            name: name.to_string(),
            config: config.clone(),
            client,
            shared: OnceCell::new(),
            leased,
            closed: AtomicBool::new(false),
        }))
    }

    /// The connection every request's plain commands share. Made on first use (or by the
    /// startup check) and remade by `ConnectionManager` after failures.
    pub async fn shared(&self) -> Result<ConnectionManager> {
        self.check_open()?;
        let manager = self
            .shared
            .get_or_try_init(|| async {
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
                .map_err(anyhow::Error::from)
            })
            .await
            .with_context(|| self.unavailable())?;
        Ok(manager.clone())
    }

    /// A connection of its own, until the lease is dropped. Waits up to the acquire timeout
    /// for one to come free.
    pub async fn lease(&self) -> Result<Connection> {
        self.check_open()?;
        self.leased
            .get()
            .await
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| self.unavailable())
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
