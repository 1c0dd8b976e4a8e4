//! `wasi:keyvalue` (store, atomics, batch) over host-held stores.
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
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};
use store::{Error as KvError, KeyResponse};

/// A key and its value, as `batch.get-many` returns them.
pub type Entry = (String, Vec<u8>);

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

    async fn set_many(self, ns: Arc<str>, entries: Vec<Entry>) -> Result<()> {
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

    async fn list_keys(self, ns: Arc<str>, cursor: u64) -> Result<KeyResponse> {
        let (keys, cursor) = match self {
            Backend::Embedded(s) => {
                let skip = usize::try_from(cursor).unwrap_or(usize::MAX);
                blocking(move || s.list_keys(&ns, skip)).await?
            }
            Backend::Redis(r) => redis::list_keys(&r, &ns, cursor).await?,
        };
        Ok(KeyResponse { keys, cursor })
    }

    async fn increment(self, ns: Arc<str>, key: String, delta: u64) -> Result<u64> {
        match self {
            Backend::Embedded(s) => blocking(move || s.increment(&ns, &key, delta)).await,
            Backend::Redis(r) => redis::increment(&r, &ns, &key, delta).await,
        }
    }

    async fn get_many(self, ns: Arc<str>, keys: Vec<String>) -> Result<Vec<Option<Entry>>> {
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
pub struct Bucket {
    store: Backend,
    namespace: Arc<str>,
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
        Ok(outcome.map_err(|e| {
            tracing::warn!("key-value store error: {e:#}");
            KvError::Other(format!("{e:#}"))
        }))
    }
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
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyResponse, KvError>> {
        self.run(&bucket, |b, ns| b.list_keys(ns, cursor.unwrap_or(0)))
            .await
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
        delta: u64,
    ) -> wasmtime::Result<Result<u64, KvError>> {
        self.run(&bucket, |b, ns| b.increment(ns, key, delta)).await
    }
}

impl batch::Host for KeyValue<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<Entry>>, KvError>> {
        self.run(&bucket, |b, ns| b.get_many(ns, keys)).await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<Entry>,
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
