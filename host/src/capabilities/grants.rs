//! What one tenant may open, by name: the same table for key-value stores and pools.
//!
//! Every configured resource is listed — `None` where the tenant was not granted it — so a
//! guest learns "not granted" for a resource that exists and "no such" for a name that does
//! not, and the host logs each refusal.

use std::collections::HashMap;

pub struct Grants<T> {
    kind: &'static str,
    section: &'static str,
    entries: HashMap<String, Option<T>>,
}

/// Why a name could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoSuch,
    NotGranted,
}

impl<T: Clone> Grants<T> {
    /// `kind` names the resource in log lines ("key-value store", "Redis pool"), `section`
    /// the config table resources of its kind are declared in ("stores", "pools"); `all` are
    /// every configured resource, with what this tenant would get of it (`None`: nothing).
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

    pub fn open(&self, name: &str) -> Result<&T, Refusal> {
        match self.entries.get(name) {
            Some(Some(item)) => Ok(item),
            Some(None) => {
                tracing::warn!(
                    "{} {name:?} not granted to this tenant (add it to the tenant's `grants.{}`)",
                    self.kind,
                    self.section
                );
                Err(Refusal::NotGranted)
            }
            None => {
                tracing::warn!(
                    "no {} named {name:?} is configured (add a [{}.{name}] section)",
                    self.kind,
                    self.section
                );
                Err(Refusal::NoSuch)
            }
        }
    }
}

impl<T> Default for Grants<T> {
    fn default() -> Self {
        Grants {
            kind: "resource",
            section: "resources",
            entries: HashMap::new(),
        }
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
        assert_eq!(grants.open("b"), Err(Refusal::NotGranted));
        assert_eq!(grants.open("c"), Err(Refusal::NoSuch));
    }
}
