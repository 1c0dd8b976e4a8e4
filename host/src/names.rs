//! The names an operator gives things in the config — tenants, apps, stores, pools — which
//! end up in log lines, key prefixes, database roles and URLs, so they are kept plain.

use anyhow::{Result, bail};

/// Checks a name at config key `key`: letters, digits, '-' and '_' only.
pub fn check(name: &str, key: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!("key `{key}`: names may only use letters, digits, '-' and '_'");
    }
    Ok(())
}
