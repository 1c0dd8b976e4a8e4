//! The stores behind `wasi:keyvalue`: where each configured store lives (`[stores]`) and the
//! operations of the interface on either kind — the embedded store on local disk
//! ([`super::embedded`]) or a Redis server ([`super::redis`]).

use super::embedded::EmbeddedStore;
use super::redis;
use crate::capabilities::redis::RedisPool;
use crate::capabilities::servers::{PoolConfig, PoolKind, Servers, check_url_scheme};
use crate::secrets::Secret;
use crate::tls::CaFile;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A key and its value (`None`: absent), as `batch.get-many` returns them.
pub type Entry = (String, Option<Vec<u8>>);

/// Keys returned per `list-keys` page (a hint for Redis's SCAN).
const LIST_PAGE: usize = 1000;

/// A `[stores.NAME]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum StoreSection {
    /// Persistent on local disk, no server needed.
    Embedded {
        /// The database file, relative to the config file.
        path: PathBuf,
    },
    /// A Redis server, shared through one multiplexed connection.
    Redis {
        /// `redis://[user:password@]host:port[/db]` (`rediss://` for TLS)
        url: Secret<String>,
        /// As for pools: the CA that signs the server's certificate.
        ca_file: Option<PathBuf>,
    },
}

/// Where a key-value store lives, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Embedded(PathBuf),
    /// On the Redis pool with these settings (shared with a `[pools]` entry that has them).
    Redis(PoolConfig),
}

impl StoreSection {
    /// Validates the entry `[stores.NAME]`; paths are relative to `base`.
    pub fn resolve(self, name: &str, base: &Path) -> Result<StoreConfig> {
        Ok(match self {
            StoreSection::Embedded { path } => StoreConfig::Embedded(base.join(path)),
            StoreSection::Redis { url, ca_file } => {
                check_url_scheme(PoolKind::Redis, url.expose(), &format!("stores.{name}.url"))?;
                let ca = ca_file
                    .map(|path| CaFile::read(&base.join(path)))
                    .transpose()
                    .with_context(|| format!("key `stores.{name}.ca_file`"))?;
                StoreConfig::Redis(PoolConfig::redis(url, ca))
            }
        })
    }
}

/// A configured store, shared by every request of every tenant granted it.
#[derive(Clone)]
pub enum Backend {
    Embedded(Arc<EmbeddedStore>),
    /// On a Redis pool, shared with `[pools]` entries of equal settings.
    Redis(Arc<RedisPool>),
}

impl Backend {
    /// Opens a configured store; a Redis store shares the pool of `[pools]` entries with its
    /// settings, and connects as they do.
    pub fn open(name: &str, config: &StoreConfig, servers: &mut Servers) -> Result<Backend> {
        Ok(match config {
            StoreConfig::Embedded(path) => Backend::Embedded(EmbeddedStore::open(path)?),
            StoreConfig::Redis(pool) => {
                Backend::Redis(servers.shared(name, pool, RedisPool::new)?)
            }
        })
    }

    pub async fn get(self, ns: Arc<str>, key: String) -> Result<Option<Vec<u8>>> {
        match self {
            Backend::Embedded(s) => blocking(move || s.get(&ns, &key)).await,
            Backend::Redis(r) => redis::get(&r, &ns, &key).await,
        }
    }

    pub async fn set(self, ns: Arc<str>, key: String, value: Vec<u8>) -> Result<()> {
        self.set_many(ns, vec![(key, value)]).await
    }

    pub async fn set_many(self, ns: Arc<str>, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        match self {
            Backend::Embedded(s) => {
                blocking(move || {
                    s.write(&ns, |t| {
                        for (key, value) in &entries {
                            t.insert(key.as_str(), value.as_slice())?;
                        }
                        Ok(())
                    })
                })
                .await
            }
            Backend::Redis(r) => redis::set_many(&r, &ns, entries).await,
        }
    }

    pub async fn delete_many(self, ns: Arc<str>, keys: Vec<String>) -> Result<()> {
        match self {
            Backend::Embedded(s) => {
                blocking(move || {
                    s.write(&ns, |t| {
                        for key in &keys {
                            t.remove(key.as_str())?;
                        }
                        Ok(())
                    })
                })
                .await
            }
            Backend::Redis(r) => redis::delete(&r, &ns, &keys).await,
        }
    }

    pub async fn exists(self, ns: Arc<str>, key: String) -> Result<bool> {
        match self {
            Backend::Embedded(s) => blocking(move || Ok(s.get(&ns, &key)?.is_some())).await,
            Backend::Redis(r) => redis::exists(&r, &ns, &key).await,
        }
    }

    /// One page of keys, and the cursor of the next page if there is one. The cursor is
    /// opaque to guests: a position for the embedded store, Redis's SCAN cursor for Redis.
    pub async fn list_keys(
        self,
        ns: Arc<str>,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>)> {
        let cursor: u64 = match cursor {
            Some(c) => c
                .parse()
                .with_context(|| format!("invalid list-keys cursor {c:?}"))?,
            None => 0,
        };
        let (keys, cursor) = match self {
            Backend::Embedded(s) => {
                let skip = usize::try_from(cursor).unwrap_or(usize::MAX);
                blocking(move || s.list_keys(&ns, skip, LIST_PAGE)).await?
            }
            Backend::Redis(r) => redis::list_keys(&r, &ns, cursor, LIST_PAGE).await?,
        };
        Ok((keys, cursor.map(|c| c.to_string())))
    }

    /// Sets `key` to `value` only if it still holds `expected` (`None`: absent); whether it did.
    pub async fn swap(
        self,
        ns: Arc<str>,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool> {
        match self {
            Backend::Embedded(s) => {
                blocking(move || s.swap(&ns, &key, expected.as_deref(), &value)).await
            }
            Backend::Redis(r) => redis::swap(&r, &ns, &key, expected.as_deref(), &value).await,
        }
    }

    pub async fn increment(self, ns: Arc<str>, key: String, delta: i64) -> Result<i64> {
        match self {
            Backend::Embedded(s) => blocking(move || s.increment(&ns, &key, delta)).await,
            Backend::Redis(r) => redis::increment(&r, &ns, &key, delta).await,
        }
    }

    pub async fn get_many(self, ns: Arc<str>, keys: Vec<String>) -> Result<Vec<Entry>> {
        match self {
            Backend::Embedded(s) => blocking(move || s.get_many(&ns, keys)).await,
            Backend::Redis(r) => redis::get_many(&r, &ns, keys).await,
        }
    }
}

/// Runs a blocking (disk) operation off the async workers.
async fn blocking<T: Send + 'static>(op: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(op)
        .await
        .context("key-value operation failed")?
}
