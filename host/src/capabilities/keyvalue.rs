//! `wasi:keyvalue@0.2.0-draft2` (store, atomics with increment and compare-and-swap, batch) over
//! host-held stores — the version Spin and wasmCloud guests are built against.
//!
//! Config: the `[stores]` section ([`backend::StoreSection`]). App-lifetime state: one
//! [`Backend`] per configured store, opened once at startup — the embedded store on local disk
//! ([`embedded`]), a Redis server ([`redis`]) or a NATS JetStream bucket ([`nats`], where what
//! differs from the embedded store is listed). Tenant state: the stores it was granted and
//! its namespace. Request-lifetime state: the buckets a guest opened, in its resource table,
//! dropped with the sandbox. The host namespaces a tenant's keys (a table of its own, or a key
//! prefix): no key of another tenant can be named, listed or overwritten. Storage failures
//! reach the guest as `wasi:keyvalue` errors, never as traps.

mod backend;
mod counter;
mod embedded;
mod nats;
mod redis;

pub use backend::{Backend, StoreConfig, StoreSection};
pub use embedded::EmbeddedStore;

use super::grants::{Grants, Refusal, granted_names};
use super::servers::Servers;
use super::shape::{
    Capability, ConfigFile, HasView, RequestInfo, TenantInfo, WasiReleases, host_view,
};
use crate::metrics::StoreMeter;
use crate::names;
use crate::sections::Table;
use anyhow::Result;
use backend::{Current, Entry};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wasmtime::component::{Linker, Resource};

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

/// An open bucket: the store and the tenant's namespace in it.
#[derive(Clone)]
pub struct Bucket {
    store: Backend,
    meter: StoreMeter,
    namespace: Arc<str>,
}

/// A compare-and-swap in progress: what was read when it was made (the value, and on NATS its
/// revision), to be compared at swap.
pub struct Cas {
    bucket: Bucket,
    key: String,
    current: Current,
}

pub struct KeyValue;

/// A tenant's stores, and the prefix of its keys in them.
pub struct TenantStores {
    stores: Grants<(Backend, StoreMeter)>,
    namespace: Arc<str>,
}

impl Capability for KeyValue {
    const SECTIONS: &'static [&'static str] = &["stores"];
    const GRANTS: &'static [&'static str] = &["stores"];

    type Config = BTreeMap<String, StoreConfig>;
    /// Names of the stores granted.
    type Grant = Vec<String>;
    type App = HashMap<String, (Backend, StoreMeter)>;
    type Tenant = TenantStores;
    type Request = ();

    fn config(file: &ConfigFile<'_>) -> Result<Self::Config> {
        let section: BTreeMap<String, StoreSection> = file.root.get_or_default("stores")?;
        section
            .into_iter()
            .map(|(name, store)| {
                names::check(&name, &format!("stores.{name}"))?;
                let store = store.resolve(&name, file.base)?;
                Ok((name, store))
            })
            .collect()
    }

    fn grant(grants: &Table<'_>, stores: &Self::Config, _: &ConfigFile<'_>) -> Result<Vec<String>> {
        granted_names(grants, "stores", "store", "stores", stores)
    }

    fn app(
        stores: &Self::Config,
        _: &[(&str, &Vec<String>)],
        servers: &mut Servers,
    ) -> Result<Self::App> {
        stores
            .iter()
            .map(|(name, store)| {
                let backend = Backend::open(name, store, servers)
                    .map_err(|e| e.context(format!("key `stores.{name}`")))?;
                Ok((name.clone(), (backend, servers.metrics().store(name))))
            })
            .collect()
    }

    fn tenant(
        stores: &Self::App,
        tenant: &TenantInfo<'_>,
        granted: &Vec<String>,
    ) -> Result<TenantStores> {
        Ok(TenantStores {
            stores: Grants::new(
                "key-value store",
                "stores",
                granted,
                stores.iter().map(|(n, s)| (n, Some(s.clone()))),
            ),
            namespace: tenant.namespace.clone(),
        })
    }

    fn request(_: &TenantStores, _: &RequestInfo<'_>) -> Result<()> {
        Ok(())
    }

    fn add_to_linker<T: HasView<Self>>(linker: &mut Linker<T>, _: WasiReleases) -> Result<()> {
        store::add_to_linker::<_, ViewData>(linker, view::<T>)?;
        atomics::add_to_linker::<_, ViewData>(linker, view::<T>)?;
        batch::add_to_linker::<_, ViewData>(linker, view::<T>)?;
        Ok(())
    }
}

host_view!(KeyValueView for KeyValue);

impl KeyValueView<'_> {
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
        Ok(bucket.meter.count(outcome).map_err(storage_error))
    }

    /// Reads `key` and keeps what it read in a new `cas` resource.
    async fn new_cas(
        &mut self,
        bucket: Bucket,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, KvError>> {
        let current = (bucket.store.clone())
            .read_for_swap(bucket.namespace.clone(), key.clone())
            .await;
        let current = bucket.meter.count(current);
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

impl store::Host for KeyValueView<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, KvError>> {
        let store = match self.tenant.stores.open(&identifier) {
            Ok(store) => store,
            Err(Refusal::NotGranted(_)) => return Ok(Err(KvError::AccessDenied)),
            Err(Refusal::NoSuch(_)) => return Ok(Err(KvError::NoSuchStore)),
        };
        let (store, meter) = store.clone();
        let bucket = Bucket {
            store,
            meter,
            namespace: self.tenant.namespace.clone(),
        };
        Ok(Ok(self.table.push(bucket)?))
    }
}

impl store::HostBucket for KeyValueView<'_> {
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
        self.run(&bucket, |b, ns| async move {
            let (keys, cursor) = b.list_keys(ns, cursor).await?;
            Ok(KeyResponse { keys, cursor })
        })
        .await
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueView<'_> {
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
        let swapped = bucket.meter.count(swapped);
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

impl atomics::HostCas for KeyValueView<'_> {
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
        Ok(Ok(self.table.get(&cas)?.current.value.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KeyValueView<'_> {
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
