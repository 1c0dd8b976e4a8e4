//! What one tenant may open, by name: the same table for key-value stores and pools.
//!
//! Every configured resource is listed — `None` where the tenant was not granted it — so a
//! guest learns "not granted" for a resource that exists and "no such" for a name that does
//! not, and the host logs each refusal.

use crate::sections::Table;
use anyhow::{Result, bail};
use std::collections::{BTreeMap, HashMap};

pub struct Grants<T> {
    kind: &'static str,
    section: &'static str,
    entries: HashMap<String, Option<T>>,
}

/// The names a tenant's `grants.KEY` lists, each of which must be declared in `[SECTION]`
/// (`declared`); `kind` names them in the error ("store", "pool").
pub fn granted_names<T>(
    grants: &Table<'_>,
    key: &str,
    kind: &str,
    section: &str,
    declared: &BTreeMap<String, T>,
) -> Result<Vec<String>> {
    let names: Vec<String> = grants.get_or_default(key)?;
    if let Some(name) = names.iter().find(|name| !declared.contains_key(*name)) {
        bail!(
            "key `{}`: {kind} {name:?} is granted, but there is no [{section}.{name}] section",
            grants.key(key)
        );
    }
    Ok(names)
}

/// Why a name could not be opened, with the one message every capability gives for it (to
/// the guest, and to the host log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoSuch(String),
    NotGranted(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::NoSuch(message) | Refusal::NotGranted(message) => message,
        }
    }
}

impl<T: Clone> Grants<T> {
    /// `kind` names the resource in messages ("key-value store", "Redis pool"), `section` the
    /// config table resources of its kind are declared in, and the tenant's `grants` key that
    /// grants them ("stores", "pools"); `all` are every configured resource, with what this
    /// tenant would get of it (`None`: nothing).
    pub fn new<'a>(
        kind: &'static str,
        section: &'static str,
        granted: &[String],
        all: impl IntoIterator<Item = (&'a String, Option<T>)>,
    ) -> Grants<T> {
        let entries = all
            .into_iter()
            .map(|(name, item)| (name.clone(), item.filter(|_| granted.contains(name))))
            .collect();
        Grants {
            kind,
            section,
            entries,
        }
    }

    /// What the tenant holds under `name`; a refusal is logged here.
    pub fn open(&self, name: &str) -> Result<&T, Refusal> {
        let (kind, section) = (self.kind, self.section);
        let refusal = match self.entries.get(name) {
            Some(Some(item)) => return Ok(item),
            Some(None) => Refusal::NotGranted(format!(
                "{kind} {name:?} not granted to this tenant (add it to the tenant's \
                 `grants.{section}`)"
            )),
            None => Refusal::NoSuch(format!(
                "no {kind} named {name:?} is configured (add a [{section}.{name}] section)"
            )),
        };
        tracing::warn!("{}", refusal.message());
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_not_granted_and_unknown_are_told_apart() {
        let all: HashMap<String, u8> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        let grants = Grants::new(
            "pool",
            "pools",
            &["a".to_string()],
            all.iter().map(|(n, v)| (n, Some(*v))),
        );
        assert_eq!(grants.open("a"), Ok(&1));
        let not_granted = grants.open("b").unwrap_err();
        assert!(
            matches!(not_granted, Refusal::NotGranted(_)),
            "{not_granted:?}"
        );
        assert!(
            not_granted.message().contains("grants.pools"),
            "{not_granted:?}"
        );
        let unknown = grants.open("c").unwrap_err();
        assert!(matches!(unknown, Refusal::NoSuch(_)), "{unknown:?}");
        assert!(unknown.message().contains("[pools.c]"), "{unknown:?}");
    }
}
