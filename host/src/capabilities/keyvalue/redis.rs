//! The Redis backend: one multiplexed connection per configured store, shared by every
//! request (plain commands pipeline over it; no per-request checkout). Keys are prefixed with
//! the tenant's namespace by the host, so a guest can neither name nor list another tenant's
//! keys.
//!
//! The connection is made lazily and remade after failures: a Redis that is down at startup or
//! goes away later turns into errors for the guests that need it, and service resumes when it
//! is back, without restarting the host.

use super::Entry;
use anyhow::{Context, Result, bail};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long one command may take, connecting included.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RedisStore {
    name: String,
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
}

impl RedisStore {
    pub fn new(name: &str, url: &str) -> Result<Arc<RedisStore>> {
        let client = redis::Client::open(url)
            .with_context(|| format!("invalid Redis URL for store {name:?}"))?;
        Ok(Arc::new(RedisStore {
            name: name.to_string(),
            client,
            connection: OnceCell::new(),
        }))
    }

    /// Tries to connect now so that a misconfiguration shows in the log at startup; failure is
    /// not fatal (the next use tries again).
    pub async fn warm_up(&self) {
        if let Err(e) = self.connection().await {
            tracing::warn!(
                store = %self.name,
                address = %self.client.get_connection_info().addr(),
                "Redis not reachable at startup ({e:#}); requests that use this store get an \
                 error until it is"
            );
        }
    }

    async fn connection(&self) -> Result<ConnectionManager> {
        let manager = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(COMMAND_TIMEOUT))
                    .set_response_timeout(Some(COMMAND_TIMEOUT));
                tokio::time::timeout(
                    COMMAND_TIMEOUT,
                    ConnectionManager::new_with_config(self.client.clone(), config),
                )
                .await
                .map_err(|_| anyhow::anyhow!("timed out connecting"))?
                .map_err(anyhow::Error::from)
            })
            .await
            .with_context(|| format!("Redis store {:?} unavailable", self.name))?;
        Ok(manager.clone())
    }

    fn key(namespace: &str, key: &str) -> String {
        format!("{namespace}:{key}")
    }

    pub async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.connection().await?.get(Self::key(ns, key)).await?)
    }

    pub async fn delete(&self, ns: &str, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keys.iter().map(|k| Self::key(ns, k)).collect();
        let _: i64 = self.connection().await?.del(keys).await?;
        Ok(())
    }

    pub async fn exists(&self, ns: &str, key: &str) -> Result<bool> {
        Ok(self.connection().await?.exists(Self::key(ns, key)).await?)
    }

    pub async fn increment(&self, ns: &str, key: &str, delta: u64) -> Result<u64> {
        let delta = i64::try_from(delta).context("increment too large for Redis")?;
        let value: i64 = self
            .connection()
            .await?
            .incr(Self::key(ns, key), delta)
            .await?;
        u64::try_from(value).context("counter is negative")
    }

    pub async fn get_many(&self, ns: &str, keys: Vec<String>) -> Result<Vec<Option<Entry>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<String> = keys.iter().map(|k| Self::key(ns, k)).collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(full)
            .query_async(&mut self.connection().await?)
            .await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    pub async fn set_many(&self, ns: &str, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("MSET");
        for (key, value) in &entries {
            cmd.arg(Self::key(ns, key)).arg(value);
        }
        let () = cmd.query_async(&mut self.connection().await?).await?;
        Ok(())
    }

    /// One page of keys via SCAN over the tenant's prefix; the cursor is Redis's own.
    pub async fn list_keys(&self, ns: &str, cursor: u64) -> Result<(Vec<String>, Option<u64>)> {
        if ns.contains(['*', '?', '[', ']', '\\']) {
            bail!("namespace {ns:?} cannot be scanned safely");
        }
        let prefix = Self::key(ns, "");
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(super::LIST_PAGE)
            .query_async(&mut self.connection().await?)
            .await?;
        let keys = keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        Ok((keys, (next != 0).then_some(next)))
    }
}
