//! Key-value stores held by the host, through the standard `wasi:keyvalue` interfaces.
//!
//! ```ignore
//! let bucket = hostel_guest::kv::Bucket::open("default")?;
//! let visits = bucket.increment("visits", 1)?;
//! ```
//!
//! The host decides which stores a tenant may open (`grants.stores`) and keeps each tenant's
//! keys apart; a guest only ever names its own keys.

use crate::bindings::wasi::keyvalue::{atomics, batch, store};

pub use store::Error;

/// A key and its value.
pub type Entry = (String, Vec<u8>);

/// An open store.
pub struct Bucket(store::Bucket);

impl Bucket {
    /// Opens the store called `name` in the host's configuration.
    pub fn open(name: &str) -> Result<Bucket, Error> {
        store::open(name).map(Bucket)
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.get(key)
    }

    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.0.set(key, value.as_ref())
    }

    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.0.delete(key)
    }

    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.0.exists(key)
    }

    /// Every key, following the host's pages.
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.0.list_keys(cursor)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to the counter at `key` (missing counts as 0) atomically; returns the new
    /// value.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, Error> {
        atomics::increment(&self.0, key, delta)
    }

    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, Error> {
        batch::get_many(&self.0, keys)
    }

    pub fn set_many(&self, entries: &[Entry]) -> Result<(), Error> {
        batch::set_many(&self.0, entries)
    }

    pub fn delete_many(&self, keys: &[String]) -> Result<(), Error> {
        batch::delete_many(&self.0, keys)
    }
}
