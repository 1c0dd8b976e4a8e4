//! The tenant's variables and secrets, through the standard `wasi:config/store`: set by the
//! operator in the host config (`grants.variables`, `grants.secrets`), read-only here.
//!
//! ```no_run
//! let greeting = hostel_guest::config::get("greeting")?.unwrap_or_else(|| "hello".into());
//! # Ok::<(), String>(())
//! ```

use crate::bindings::wasi::config::store;

/// The value of `key`, or `None` when the tenant was given no such key.
pub fn get(key: &str) -> Result<Option<String>, String> {
    store::get(key).map_err(describe)
}

/// The value of `key` parsed as a `T`, or `None` when it is missing or does not parse.
pub fn get_parsed<T: std::str::FromStr>(key: &str) -> Option<T> {
    get(key).ok().flatten()?.trim().parse().ok()
}

/// Every key and value the tenant was given.
pub fn get_all() -> Result<Vec<(String, String)>, String> {
    store::get_all().map_err(describe)
}

fn describe(error: store::Error) -> String {
    match error {
        store::Error::Upstream(why) => format!("config store: {why}"),
        store::Error::Io(why) => format!("config store I/O: {why}"),
    }
}
