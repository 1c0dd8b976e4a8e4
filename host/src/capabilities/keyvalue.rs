//! `wasi:keyvalue@0.2.0-draft2` (store, atomics with increment and compare-and-swap, batch) over
//! host-held stores — the version Spin and wasmCloud guests are built against.
//!
//! App-lifetime state: one [`Backend`] per configured store, opened once at startup — the
//! embedded store on local disk ([`embedded`]) or a Redis server ([`redis`]). Request-lifetime
//! state: the buckets a guest opened, in its resource table, dropped with the sandbox. A tenant
//! sees only the stores it was granted, and the host namespaces its keys (a table of its own,
//! or a key prefix): no key of another tenant can be named, listed or overwritten. Storage
//! failures reach the guest as `wasi:keyvalue` errors, never as traps.

mod embedded;
mod redis;

pub use embedded::EmbeddedStore;

use super::grants::Refusal;
use super::redis::RedisPool;
use crate::apps::TenantRuntime;
use crate::config::StoreConfig;
use crate::pools::Pools;
use crate::sandbox::SandboxState;
use anyhow::{Context, Result};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
    });
}

use atomics::CasError;
use bindings::wasi::keyvalue::{atomics, batch, store};
use store::{Error as KvError, KeyResponse};

/// A key and its value (`None`: absent), as `batch.get-many` returns them.
pub type Entry = (String, Option<Vec<u8>>);

/// Keys returned per `list-keys` page (a hint for Redis's SCAN).
const LIST_PAGE: usize = 1000;

/// A configured store, shared by every request of every tenant granted it.
#[derive(Clone)]
pub enum Backend {
    Embedded(Arc<EmbeddedStore>),
    /// On a Redis pool, shared with `[pools]` entries of equal settings.
    Redis(Arc<RedisPool>),
}

impl Backend {
    /// Opens a configured store; a Redis store connects as its pool does.
    pub fn open(name: &str, config: &StoreConfig, pools: &mut Pools) -> Result<Backend> {
        Ok(match config {
            StoreConfig::Embedded(path) => Backend::Embedded(EmbeddedStore::open(path)?),
            StoreConfig::Redis(pool) => Backend::Redis(pools.redis_pool(name, pool)?),
        })
    }

    async fn get(self, ns: Arc<str>, key: String) -> Result<Option<Vec<u8>>> {
        match self {
            Backend::Embedded(s) => blocking(move || s.get(&ns, &key)).await,
            Backend::Redis(r) => redis::get(&r, &ns, &key).await,
        }
    }

    async fn set(self, ns: Arc<str>, key: String, value: Vec<u8>) -> Result<()> {
        self.set_many(ns, vec![(key, value)]).await
    }

    async fn set_many(self, ns: Arc<str>, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
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

    async fn delete_many(self, ns: Arc<str>, keys: Vec<String>) -> Result<()> {
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

    async fn exists(self, ns: Arc<str>, key: String) -> Result<bool> {
        match self {
            Backend::Embedded(s) => blocking(move || Ok(s.get(&ns, &key)?.is_some())).await,
            Backend::Redis(r) => redis::exists(&r, &ns, &key).await,
        }
    }

    /// One page of keys. The cursor is opaque to guests: a position for the embedded store,
    /// Redis's SCAN cursor for Redis.
    async fn list_keys(self, ns: Arc<str>, cursor: Option<String>) -> Result<KeyResponse> {
        let cursor: u64 = match cursor {
            Some(c) => c
                .parse()
                .with_context(|| format!("invalid list-keys cursor {c:?}"))?,
            None => 0,
        };
        let (keys, cursor) = match self {
            Backend::Embedded(s) => {
                let skip = usize::try_from(cursor).unwrap_or(usize::MAX);
                blocking(move || s.list_keys(&ns, skip)).await?
            }
            Backend::Redis(r) => redis::list_keys(&r, &ns, cursor).await?,
        };
        Ok(KeyResponse {
            keys,
            cursor: cursor.map(|c| c.to_string()),
        })
    }

    /// Sets `key` to `value` only if it still holds `expected` (`None`: absent); whether it did.
    async fn swap(
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

    async fn increment(self, ns: Arc<str>, key: String, delta: i64) -> Result<i64> {
        match self {
            Backend::Embedded(s) => blocking(move || s.increment(&ns, &key, delta)).await,
            Backend::Redis(r) => redis::increment(&r, &ns, &key, delta).await,
        }
    }

    async fn get_many(self, ns: Arc<str>, keys: Vec<String>) -> Result<Vec<Entry>> {
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

/// An open bucket: the store and the tenant's namespace in it.
#[derive(Clone)]
pub struct Bucket {
    store: Backend,
    namespace: Arc<str>,
}

/// A compare-and-swap in progress: the value read when it was made, to be compared at swap.
pub struct Cas {
    bucket: Bucket,
    key: String,
    current: Option<Vec<u8>>,
}

/// The view the generated host traits are implemented on.
pub struct KeyValue<'a> {
    tenant: &'a TenantRuntime,
    table: &'a mut ResourceTable,
}

struct KeyValueMarker;

impl HasData for KeyValueMarker {
    type Data<'a> = KeyValue<'a>;
}

pub fn add_to_linker(linker: &mut Linker<SandboxState>) -> Result<()> {
    fn view(state: &mut SandboxState) -> KeyValue<'_> {
        let (tenant, table) = state.tenant_and_table();
        KeyValue { tenant, table }
    }
    store::add_to_linker::<_, KeyValueMarker>(linker, view)?;
    atomics::add_to_linker::<_, KeyValueMarker>(linker, view)?;
    batch::add_to_linker::<_, KeyValueMarker>(linker, view)?;
    Ok(())
}

impl KeyValue<'_> {
    /// Runs one operation on an open bucket; storage errors become the guest-visible `other`
    /// error (and a log line), never a trap.
    async fn run<T, F>(
        &mut self,
        bucket: &Resource<Bucket>,
        op: impl FnOnce(Backend, Arc<str>) -> F,
    ) -> wasmtime::Result<Result<T, KvError>>
    where
        F: Future<Output = Result<T>>,
    {
        let bucket = self.table.get(bucket)?;
        let outcome = op(bucket.store.clone(), bucket.namespace.clone()).await;
        Ok(outcome.map_err(storage_error))
    }

    /// Reads `key` and keeps what it read in a new `cas` resource.
    async fn new_cas(
        &mut self,
        bucket: Bucket,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, KvError>> {
        let current = (bucket.store.clone())
            .get(bucket.namespace.clone(), key.clone())
            .await;
        let current = match current {
            Ok(current) => current,
            Err(e) => return Ok(Err(storage_error(e))),
        };
        let cas = Cas {
            bucket,
            key,
            current,
        };
        Ok(Ok(self.table.push(cas)?))
    }
}

/// Storage failures reach the guest as `other` (and the log), never as traps.
fn storage_error(e: anyhow::Error) -> KvError {
    tracing::warn!("key-value store error: {e:#}");
    KvError::Other(format!("{e:#}"))
}

impl store::Host for KeyValue<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, KvError>> {
        let store = match self.tenant.keyvalue.open(&identifier) {
            Ok(store) => store,
            Err(Refusal::NotGranted) => return Ok(Err(KvError::AccessDenied)),
            Err(Refusal::NoSuch) => return Ok(Err(KvError::NoSuchStore)),
        };
        let bucket = Bucket {
            store: store.clone(),
            namespace: self.tenant.namespace.clone(),
        };
        Ok(Ok(self.table.push(bucket)?))
    }
}

impl store::HostBucket for KeyValue<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, KvError>> {
        self.run(&bucket, |b, ns| b.get(ns, key)).await
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        self.run(&bucket, |b, ns| b.set(ns, key, value)).await
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), KvError>> {
        self.run(&bucket, |b, ns| b.delete_many(ns, vec![key]))
            .await
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, KvError>> {
        self.run(&bucket, |b, ns| b.exists(ns, key)).await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<KeyResponse, KvError>> {
        self.run(&bucket, |b, ns| b.list_keys(ns, cursor)).await
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValue<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, KvError>> {
        self.run(&bucket, |b, ns| b.increment(ns, key, delta)).await
    }

    /// Swaps in `value` if the key still holds what the `cas` read; otherwise hands back a new
    /// `cas` holding the value found now, ready for a retry.
    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), CasError>> {
        let Cas {
            bucket,
            key,
            current,
        } = self.table.delete(cas)?;
        let swapped = (bucket.store.clone())
            .swap(bucket.namespace.clone(), key.clone(), current, value)
            .await;
        Ok(match swapped {
            Ok(true) => Ok(()),
            Ok(false) => match self.new_cas(bucket, key).await? {
                Ok(retry) => Err(CasError::CasFailed(retry)),
                Err(e) => Err(CasError::StoreError(e)),
            },
            Err(e) => Err(CasError::StoreError(storage_error(e))),
        })
    }
}

impl atomics::HostCas for KeyValue<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, KvError>> {
        let bucket = self.table.get(&bucket)?.clone();
        self.new_cas(bucket, key).await
    }

    async fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, KvError>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KeyValue<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Entry>, KvError>> {
        self.run(&bucket, |b, ns| b.get_many(ns, keys)).await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        self.run(&bucket, |b, ns| b.set_many(ns, key_values)).await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        self.run(&bucket, |b, ns| b.delete_many(ns, keys)).await
    }
}
