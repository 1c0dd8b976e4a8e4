//! `wasi:keyvalue` (store, atomics, batch) over host-held stores.
//!
//! App-lifetime state: one [`EmbeddedStore`] per configured store — a redb database on local
//! disk (crash-safe, durable on commit, safe under concurrent requests) opened once at startup.
//! Request-lifetime state: the buckets a guest opened, in its resource table, dropped with the
//! sandbox. A tenant sees only the stores it was granted, and its keys live in a table of its
//! own: no key of another tenant can be named, listed or overwritten.

use crate::sandbox::SandboxState;
use anyhow::{Context, Result};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};
use std::collections::HashMap;
use std::path::Path;
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
type Entry = (String, Vec<u8>);
/// A tenant's keys, opened for reading.
type ReadTable = redb::ReadOnlyTable<&'static str, &'static [u8]>;

/// Keys returned per `list-keys` page.
const LIST_PAGE: usize = 1000;

/// A persistent key-value store on local disk.
pub struct EmbeddedStore {
    db: redb::Database,
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> Result<Arc<EmbeddedStore>> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create folder {}", parent.display()))?;
        }
        let db = redb::Database::create(path)
            .with_context(|| format!("cannot open the key-value store {}", path.display()))?;
        Ok(Arc::new(EmbeddedStore { db }))
    }

    /// A tenant's table for reading; `None` until its first write created it.
    fn read_table(&self, table: &str) -> Result<Option<ReadTable>> {
        let txn = self.db.begin_read()?;
        match txn.open_table(TableDefinition::<&str, &[u8]>::new(table)) {
            Ok(table) => Ok(Some(table)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let Some(table) = self.read_table(table)? else {
            return Ok(None);
        };
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    fn get_many(&self, table: &str, keys: Vec<String>) -> Result<Vec<Option<Entry>>> {
        let Some(table) = self.read_table(table)? else {
            return Ok(keys.iter().map(|_| None).collect());
        };
        keys.into_iter()
            .map(|key| {
                let value = table.get(key.as_str())?.map(|v| v.value().to_vec());
                Ok(value.map(|v| (key, v)))
            })
            .collect()
    }

    fn list_keys(&self, table: &str, skip: usize) -> Result<(Vec<String>, Option<u64>)> {
        let Some(table) = self.read_table(table)? else {
            return Ok((Vec::new(), None));
        };
        let mut keys = Vec::new();
        for entry in table.iter()?.skip(skip).take(LIST_PAGE + 1) {
            keys.push(entry?.0.value().to_string());
        }
        let cursor = (keys.len() > LIST_PAGE).then(|| {
            keys.truncate(LIST_PAGE);
            (skip + LIST_PAGE) as u64
        });
        Ok((keys, cursor))
    }

    /// Runs `change` on the tenant's table in one write transaction, committed durably.
    fn write<T>(
        &self,
        table: &str,
        change: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<T>,
    ) -> Result<T> {
        let txn = self.db.begin_write()?;
        let out = {
            let mut table = txn.open_table(TableDefinition::<&str, &[u8]>::new(table))?;
            change(&mut table)?
        };
        txn.commit()?;
        Ok(out)
    }
}

/// What one tenant may open: store name → store, and the table its keys live in.
#[derive(Default)]
pub struct KeyValueGrants {
    namespace: Arc<str>,
    stores: HashMap<String, Arc<EmbeddedStore>>,
}

impl KeyValueGrants {
    pub fn new(tenant: &str, stores: HashMap<String, Arc<EmbeddedStore>>) -> KeyValueGrants {
        KeyValueGrants {
            namespace: format!("tenant:{tenant}").into(),
            stores,
        }
    }
}

/// An open bucket: the store and the tenant's table in it.
pub struct Bucket {
    store: Arc<EmbeddedStore>,
    namespace: Arc<str>,
}

/// The view the generated host traits are implemented on.
pub struct KeyValue<'a> {
    grants: &'a KeyValueGrants,
    table: &'a mut ResourceTable,
}

struct KeyValueMarker;

impl HasData for KeyValueMarker {
    type Data<'a> = KeyValue<'a>;
}

pub fn add_to_linker(linker: &mut Linker<SandboxState>) -> Result<()> {
    fn view(state: &mut SandboxState) -> KeyValue<'_> {
        let (grants, table) = state.keyvalue_parts();
        KeyValue { grants, table }
    }
    store::add_to_linker::<_, KeyValueMarker>(linker, view)?;
    atomics::add_to_linker::<_, KeyValueMarker>(linker, view)?;
    batch::add_to_linker::<_, KeyValueMarker>(linker, view)?;
    Ok(())
}

impl KeyValue<'_> {
    /// Runs a blocking store operation off the async workers; storage errors become the
    /// guest-visible `other` error, never a trap.
    async fn run<T: Send + 'static>(
        &mut self,
        bucket: &Resource<Bucket>,
        op: impl FnOnce(&EmbeddedStore, &str) -> Result<T> + Send + 'static,
    ) -> wasmtime::Result<Result<T, KvError>> {
        let bucket = self.table.get(bucket)?;
        let store = bucket.store.clone();
        let namespace = bucket.namespace.clone();
        let outcome = tokio::task::spawn_blocking(move || op(&store, &namespace)).await;
        Ok(match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::warn!("key-value store error: {e:#}");
                Err(KvError::Other(format!("{e:#}")))
            }
            Err(join) => Err(KvError::Other(format!(
                "key-value operation failed: {join}"
            ))),
        })
    }
}

impl store::Host for KeyValue<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, KvError>> {
        let Some(store) = self.grants.stores.get(&identifier) else {
            return Ok(Err(KvError::AccessDenied));
        };
        let bucket = Bucket {
            store: store.clone(),
            namespace: self.grants.namespace.clone(),
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
        self.run(&bucket, move |store, ns| store.get(ns, &key))
            .await
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        self.run(&bucket, move |store, ns| {
            store.write(ns, |t| {
                t.insert(key.as_str(), value.as_slice())?;
                Ok(())
            })
        })
        .await
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), KvError>> {
        self.run(&bucket, move |store, ns| {
            store.write(ns, |t| {
                t.remove(key.as_str())?;
                Ok(())
            })
        })
        .await
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, KvError>> {
        self.run(&bucket, move |store, ns| Ok(store.get(ns, &key)?.is_some()))
            .await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyResponse, KvError>> {
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        self.run(&bucket, move |store, ns| {
            let (keys, cursor) = store.list_keys(ns, skip)?;
            Ok(KeyResponse { keys, cursor })
        })
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
        self.run(&bucket, move |store, ns| {
            store.write(ns, |t| {
                let current = match t.get(key.as_str())? {
                    None => 0,
                    Some(value) => parse_counter(value.value())
                        .with_context(|| format!("key {key:?} does not hold a counter"))?,
                };
                let next = current
                    .checked_add(delta)
                    .with_context(|| format!("counter {key:?} would overflow"))?;
                t.insert(key.as_str(), next.to_string().as_bytes())?;
                Ok(next)
            })
        })
        .await
    }
}

/// Counters are stored as decimal text, as Redis does, so either backend reads the other's.
fn parse_counter(bytes: &[u8]) -> Result<u64> {
    Ok(std::str::from_utf8(bytes)?.trim().parse()?)
}

impl batch::Host for KeyValue<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<Entry>>, KvError>> {
        self.run(&bucket, move |store, ns| store.get_many(ns, keys))
            .await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<Entry>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        self.run(&bucket, move |store, ns| {
            store.write(ns, |t| {
                for (key, value) in &key_values {
                    t.insert(key.as_str(), value.as_slice())?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        self.run(&bucket, move |store, ns| {
            store.write(ns, |t| {
                for key in &keys {
                    t.remove(key.as_str())?;
                }
                Ok(())
            })
        })
        .await
    }
}
