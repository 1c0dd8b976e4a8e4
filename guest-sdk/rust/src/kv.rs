//! Key-value stores held by the host, through the standard `wasi:keyvalue` interfaces.
//!
//! ```ignore
//! let bucket = hostel_guest::kv::Bucket::open("default")?;
//! let visits = bucket.increment("visits", 1)?;
//! // Read-modify-write without lost updates (compare-and-swap, retried on conflict):
//! bucket.update("log", |old| [old.unwrap_or_default(), b"+1"].concat())?;
//! ```
//!
//! The interfaces are `wasi:keyvalue@0.2.0-draft2`, as Spin and wasmCloud use them.
//!
//! The host decides which stores a tenant may open (`grants.stores`) and keeps each tenant's
//! keys apart; a guest only ever names its own keys.

use crate::bindings::wasi::keyvalue::{atomics, batch, store};

pub use store::Error;

/// A key and its value.
pub type Entry = (String, Vec<u8>);

/// A key and its value if it has one, as [`Bucket::get_many`] answers.
pub type Found = (String, Option<Vec<u8>>);

pub use atomics::CasError;

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
        let mut cursor: Option<String> = None;
        loop {
            let page = self.0.list_keys(cursor.as_deref())?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to the counter at `key` (missing counts as 0) atomically; returns the new
    /// value.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        atomics::increment(&self.0, key, delta)
    }

    /// Replaces the value at `key` with `change(current)` (`None`: absent) so that no other
    /// writer's update is lost: compare-and-swap, run again with the newer value on conflict.
    /// Returns the value written.
    pub fn update(
        &self,
        key: &str,
        mut change: impl FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let mut cas = atomics::Cas::new(&self.0, key)?;
        loop {
            let next = change(cas.current()?.as_deref());
            match atomics::swap(cas, &next) {
                Ok(()) => return Ok(next),
                Err(CasError::CasFailed(newer)) => cas = newer,
                Err(CasError::StoreError(e)) => return Err(e),
            }
        }
    }

    /// The values of `keys`, in order (`None`: absent).
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Found>, Error> {
        batch::get_many(&self.0, keys)
    }

    pub fn set_many(&self, entries: &[Entry]) -> Result<(), Error> {
        batch::set_many(&self.0, entries)
    }

    pub fn delete_many(&self, keys: &[String]) -> Result<(), Error> {
        batch::delete_many(&self.0, keys)
    }
}
