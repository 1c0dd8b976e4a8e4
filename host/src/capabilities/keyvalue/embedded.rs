//! The embedded backend: a redb database on local disk. Crash-safe and durable on commit, safe
//! under concurrent requests (redb serialises writers), no server needed. Each tenant's keys
//! live in a table of its own.

use super::counter;
use anyhow::{Context, Result};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};
use std::path::Path;
use std::sync::Arc;

/// A tenant's keys, opened for reading.
type ReadTable = redb::ReadOnlyTable<&'static str, &'static [u8]>;

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

    pub fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let Some(table) = self.read_table(table)? else {
            return Ok(None);
        };
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    pub fn get_many(
        &self,
        table: &str,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>> {
        let Some(table) = self.read_table(table)? else {
            return Ok(keys.into_iter().map(|key| (key, None)).collect());
        };
        keys.into_iter()
            .map(|key| {
                let value = table.get(key.as_str())?.map(|v| v.value().to_vec());
                Ok((key, value))
            })
            .collect()
    }

    /// Up to `page` keys after the first `skip`, and where the next page starts.
    pub fn list_keys(
        &self,
        table: &str,
        skip: usize,
        page: usize,
    ) -> Result<(Vec<String>, Option<u64>)> {
        let Some(table) = self.read_table(table)? else {
            return Ok((Vec::new(), None));
        };
        let mut keys = Vec::new();
        for entry in table.iter()?.skip(skip).take(page + 1) {
            keys.push(entry?.0.value().to_string());
        }
        let cursor = (keys.len() > page).then(|| {
            keys.truncate(page);
            (skip + page) as u64
        });
        Ok((keys, cursor))
    }

    /// Sets `key` to `value` if it holds `expected` (`None`: absent), in one transaction.
    pub fn swap(
        &self,
        table: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool> {
        self.write(table, |t| {
            let current = t.get(key)?.map(|v| v.value().to_vec());
            if current.as_deref() != expected {
                return Ok(false);
            }
            t.insert(key, value)?;
            Ok(true)
        })
    }

    /// Adds `delta` to the counter at `key` ([`counter::next`]) in one transaction.
    pub fn increment(&self, table: &str, key: &str, delta: i64) -> Result<i64> {
        self.write(table, |t| {
            let current = t.get(key)?.map(|value| value.value().to_vec());
            let next = counter::next(key, current.as_deref(), delta)?;
            t.insert(key, next.to_string().as_bytes())?;
            Ok(next)
        })
    }

    /// Runs `change` on the tenant's table in one write transaction, committed durably.
    pub fn write<T>(
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
