//! The stores behind `wasi:keyvalue`: where each configured store lives (`[stores]`) and the
//! operations of the interface on each kind — the embedded store on local disk
//! ([`super::embedded`]), a Redis server ([`super::redis`]) or a NATS JetStream key-value
//! bucket ([`super::nats`]).

use super::embedded::EmbeddedStore;
use super::nats::{self, NatsStore};
use super::redis;
use crate::capabilities::nats::{NatsSection, NatsServer};
use crate::capabilities::redis::RedisPool;
use crate::capabilities::servers::{PoolConfig, PoolKind, Servers, check_url_scheme};
use crate::secrets::Secret;
use crate::tls::CaFile;
use anyhow::{Context, Result, bail};
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
    /// A JetStream key-value bucket on NATS, shared by every host configured with it.
    Nats {
        /// `url`, `creds_file`, `ca_file`, `connect`, as for `[cluster]`.
        #[serde(flatten)]
        server: NatsSection,
        /// The bucket (default `hostel-kv`): letters, digits, '-' and '_'.
        bucket: Option<String>,
        /// Replicas of the bucket when the host creates it (default 1); a bucket that exists
        /// is used as it is.
        replicas: Option<usize>,
    },
}

/// JetStream keeps at most this many replicas of a stream.
const MAX_REPLICAS: usize = 5;

/// Where a key-value store lives, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Embedded(PathBuf),
    /// On the Redis pool with these settings (shared with a `[pools]` entry that has them).
    Redis(PoolConfig),
    /// In a bucket on the NATS client with these settings (shared with `[cluster]` and other
    /// stores that have them).
    Nats {
        server: PoolConfig,
        bucket: String,
        replicas: usize,
    },
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
            StoreSection::Nats {
                server,
                bucket,
                replicas,
            } => {
                let section = format!("stores.{name}");
                let bucket = bucket.unwrap_or_else(|| nats::DEFAULT_BUCKET.to_string());
                nats::check_bucket(&bucket, &format!("{section}.bucket"))?;
                let replicas = replicas.unwrap_or(1);
                if !(1..=MAX_REPLICAS).contains(&replicas) {
                    bail!(
                        "key `{section}.replicas`: {replicas} is not between 1 and {MAX_REPLICAS}"
                    );
                }
                StoreConfig::Nats {
                    server: server.resolve(&section, base)?,
                    bucket,
                    replicas,
                }
            }
        })
    }
}

/// What a compare-and-swap read, to be compared when it swaps: the value, and on NATS the
/// entry's revision, which the swap is conditioned on (so that no write in between, even of
/// the same bytes, goes unnoticed; the embedded store and Redis compare the value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    /// `None`: absent.
    pub value: Option<Vec<u8>>,
    /// NATS only, for a value present.
    pub revision: Option<u64>,
}

/// A configured store, shared by every request of every tenant granted it.
#[derive(Clone)]
pub enum Backend {
    Embedded(Arc<EmbeddedStore>),
    /// On a Redis pool, shared with `[pools]` entries of equal settings.
    Redis(Arc<RedisPool>),
    /// In a NATS bucket, on the client shared by users of equal settings.
    Nats(Arc<NatsStore>),
}

impl Backend {
    /// Opens a configured store; a Redis store shares the pool of `[pools]` entries with its
    /// settings, and connects as they do. A NATS store shares the client of its settings; its
    /// bucket is opened on first use, and also whenever the client is checked (at startup
    /// unless `connect = "lazy"`, and by readiness when `"required"`).
    pub fn open(name: &str, config: &StoreConfig, servers: &mut Servers) -> Result<Backend> {
        Ok(match config {
            StoreConfig::Embedded(path) => Backend::Embedded(EmbeddedStore::open(path)?),
            StoreConfig::Redis(pool) => {
                Backend::Redis(servers.shared(name, pool, RedisPool::new)?)
            }
            StoreConfig::Nats {
                server,
                bucket,
                replicas,
            } => {
                let store = NatsStore::new(
                    NatsServer::shared(servers, name, server)?,
                    bucket,
                    *replicas,
                );
                servers.also_check(server, store.clone());
                Backend::Nats(store)
            }
        })
    }

    pub async fn get(self, ns: Arc<str>, key: String) -> Result<Option<Vec<u8>>> {
        match self {
            Backend::Embedded(s) => blocking(move || s.get(&ns, &key)).await,
            Backend::Redis(r) => redis::get(&r, &ns, &key).await,
            Backend::Nats(n) => n.get(&ns, &key).await,
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
            Backend::Nats(n) => n.set_many(&ns, entries).await,
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
            Backend::Nats(n) => n.delete_many(&ns, keys).await,
        }
    }

    pub async fn exists(self, ns: Arc<str>, key: String) -> Result<bool> {
        match self {
            Backend::Embedded(s) => blocking(move || Ok(s.get(&ns, &key)?.is_some())).await,
            Backend::Redis(r) => redis::exists(&r, &ns, &key).await,
            Backend::Nats(n) => n.exists(&ns, &key).await,
        }
    }

    /// One page of keys, and the cursor of the next page if there is one. The cursor is
    /// opaque to guests: a position in key order for the embedded store and NATS, Redis's
    /// SCAN cursor for Redis.
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
            Backend::Nats(n) => {
                let skip = usize::try_from(cursor).unwrap_or(usize::MAX);
                n.list_keys(&ns, skip, LIST_PAGE).await?
            }
        };
        Ok((keys, cursor.map(|c| c.to_string())))
    }

    /// Reads `key` for a compare-and-swap: what [`Backend::swap`] compares with.
    pub async fn read_for_swap(self, ns: Arc<str>, key: String) -> Result<Current> {
        match self {
            Backend::Nats(n) => Ok(match n.read(&ns, &key).await? {
                Some((value, revision)) => Current {
                    value: Some(value),
                    revision: Some(revision),
                },
                None => Current::default(),
            }),
            other => Ok(Current {
                value: other.get(ns, key).await?,
                revision: None,
            }),
        }
    }

    /// Sets `key` to `value` only if it is still as `expected` read it (absent, if it was);
    /// whether it was.
    pub async fn swap(
        self,
        ns: Arc<str>,
        key: String,
        expected: Current,
        value: Vec<u8>,
    ) -> Result<bool> {
        let old = expected.value;
        match self {
            Backend::Embedded(s) => {
                blocking(move || s.swap(&ns, &key, old.as_deref(), &value)).await
            }
            Backend::Redis(r) => redis::swap(&r, &ns, &key, old.as_deref(), &value).await,
            Backend::Nats(n) => n.swap(&ns, &key, expected.revision, value).await,
        }
    }

    pub async fn increment(self, ns: Arc<str>, key: String, delta: i64) -> Result<i64> {
        match self {
            Backend::Embedded(s) => blocking(move || s.increment(&ns, &key, delta)).await,
            Backend::Redis(r) => redis::increment(&r, &ns, &key, delta).await,
            Backend::Nats(n) => n.increment(&ns, &key, delta).await,
        }
    }

    pub async fn get_many(self, ns: Arc<str>, keys: Vec<String>) -> Result<Vec<Entry>> {
        match self {
            Backend::Embedded(s) => blocking(move || s.get_many(&ns, keys)).await,
            Backend::Redis(r) => redis::get_many(&r, &ns, keys).await,
            Backend::Nats(n) => n.get_many(&ns, keys).await,
        }
    }
}

/// Runs a blocking (disk) operation off the async workers.
async fn blocking<T: Send + 'static>(op: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(op)
        .await
        .context("key-value operation failed")?
}

#[cfg(test)]
mod same_answers;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::servers::Connect;
    use crate::sections::Table;
    use std::collections::BTreeMap;

    fn store(text: &str) -> Result<StoreConfig> {
        let doc = Table::parse(text)?;
        let mut stores: BTreeMap<String, StoreSection> = doc.get_or_default("stores")?;
        let (name, section) = stores.pop_first().expect("one store");
        section.resolve(&name, Path::new("/nonexistent"))
    }

    #[test]
    fn a_nats_store_takes_the_connection_settings_a_bucket_and_replicas() {
        let config = store(
            "[stores.events]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222, nats://127.0.0.1:4223\"\n\
             connect = \"required\"\nbucket = \"app_kv-1\"\nreplicas = 3\n",
        )
        .unwrap();
        let StoreConfig::Nats {
            server,
            bucket,
            replicas,
        } = config
        else {
            panic!("{config:?}")
        };
        assert_eq!((bucket.as_str(), replicas), ("app_kv-1", 3));
        assert_eq!(server.kind, PoolKind::Nats);
        assert_eq!(server.connect, Connect::Required);

        let defaults = store("[stores.s]\nkind = \"nats\"\nurl = \"nats://h:4222\"\n").unwrap();
        let StoreConfig::Nats {
            bucket, replicas, ..
        } = defaults
        else {
            panic!("{defaults:?}")
        };
        assert_eq!((bucket.as_str(), replicas), ("hostel-kv", 1));
    }

    #[test]
    fn a_bad_nats_store_is_refused_naming_the_key() {
        for (text, key) in [
            ("url = \"redis://h:6379\"\n", "stores.s.url"),
            ("url = \"nats://h:4222,http://h\"\n", "stores.s.url"),
            (
                "url = \"nats://h:4222\"\nbucket = \"a.b\"\n",
                "stores.s.bucket",
            ),
            (
                "url = \"nats://h:4222\"\nbucket = \"\"\n",
                "stores.s.bucket",
            ),
            (
                "url = \"nats://h:4222\"\nreplicas = 0\n",
                "stores.s.replicas",
            ),
            (
                "url = \"nats://h:4222\"\nreplicas = 7\n",
                "stores.s.replicas",
            ),
            (
                "url = \"nats://h:4222\"\nca_file = \"nope.pem\"\n",
                "stores.s.ca_file",
            ),
            ("url = \"nats://h:4222\"\nbuckett = \"x\"\n", "buckett"),
        ] {
            let text = format!("[stores.s]\nkind = \"nats\"\n{text}");
            let e = format!("{:#}", store(&text).unwrap_err());
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
