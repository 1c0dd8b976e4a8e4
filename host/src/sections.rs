//! Reading the TOML config one table at a time, so that each section's type lives in the
//! module that uses it (a capability's own section with the capability), while every error
//! still says where: the line, and the key as a dotted path (`tenants.acme.grants.stores`).
//!
//! Values are deserialized with serde from toml's spanned document, so a section type written
//! with `#[serde(deny_unknown_fields)]` reports a typo with its line and column; the keys of a
//! table assembled from several sections are checked with [`Table::deny_unknown`].

use crate::secrets::redact_text;
use anyhow::{Result, anyhow, bail};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// A table of the config file, read key by key.
#[derive(Clone)]
pub struct Table<'i> {
    text: &'i str,
    /// Where it is, as a dotted key; empty for the whole file.
    path: String,
    entries: BTreeMap<String, Entry<'i>>,
}

#[derive(Clone)]
struct Entry<'i> {
    /// Where the key is written.
    key: Range<usize>,
    value: Spanned<DeValue<'i>>,
}

impl<'i> Table<'i> {
    /// Parses a whole document.
    pub fn parse(text: &'i str) -> Result<Table<'i>> {
        let root = DeTable::parse(text).map_err(|e| anyhow!(located(e, text)))?;
        Ok(Table::new(text, String::new(), root.into_inner()))
    }

    fn new(text: &'i str, path: String, table: DeTable<'i>) -> Table<'i> {
        let entries = table
            .into_iter()
            .map(|(key, value)| {
                let entry = Entry {
                    key: key.span(),
                    value,
                };
                (key.into_inner().into_owned(), entry)
            })
            .collect();
        Table {
            text,
            path,
            entries,
        }
    }

    /// Where this table is, as a dotted key.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The dotted key of `key` in this table, as errors name it.
    pub fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key` as a `T`, if the table has it.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(entry) = self.entries.get(key) else {
            return Ok(None);
        };
        T::deserialize(ValueDeserializer::from(entry.value.clone()))
            .map(Some)
            .map_err(|e| anyhow!("key `{}`: {}", self.key(key), located(e, self.text)))
    }

    /// The value of `key` as a `T`, its default if the table does not have it.
    pub fn get_or_default<T: DeserializeOwned + Default>(&self, key: &str) -> Result<T> {
        Ok(self.get(key)?.unwrap_or_default())
    }

    /// The list of strings at `key`, each parsed by `parse`; an error names the key and the
    /// entry (redacted: an entry may hold a password).
    pub fn get_each<T>(&self, key: &str, parse: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
        let entries: Vec<String> = self.get_or_default(key)?;
        entries
            .iter()
            .map(|entry| {
                parse(entry).map_err(|e| {
                    anyhow!(
                        "key `{}`: entry {:?}: {e:#}",
                        self.key(key),
                        redact_text(entry)
                    )
                })
            })
            .collect()
    }

    /// The table at `key`; an empty one if there is none.
    pub fn table(&self, key: &str) -> Result<Table<'i>> {
        let Some(entry) = self.entries.get(key) else {
            return Ok(Table::new(self.text, self.key(key), DeTable::new()));
        };
        match entry.value.get_ref() {
            DeValue::Table(table) => Ok(Table::new(self.text, self.key(key), table.clone())),
            other => bail!(
                "line {}: key `{}`: expected a table, found {}",
                self.line(&entry.value.span()),
                self.key(key),
                other.type_str()
            ),
        }
    }

    /// Every entry of this table as a table of its own (`[tenants.NAME]`), by name.
    pub fn tables(&self) -> Result<BTreeMap<String, Table<'i>>> {
        self.entries
            .keys()
            .map(|name| Ok((name.clone(), self.table(name)?)))
            .collect()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether any key has a value other than an empty array or table.
    pub fn says_anything(&self) -> bool {
        self.entries
            .values()
            .any(|entry| match entry.value.get_ref() {
                DeValue::Array(items) => !items.is_empty(),
                DeValue::Table(table) => !table.is_empty(),
                _ => true,
            })
    }

    /// Refuses a key not in `known` (which may name a key twice, as two readers of it do):
    /// a typo is an error, not a silently ignored key.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<()> {
        for (key, entry) in &self.entries {
            if !known.contains(&key.as_str()) {
                let mut expected: Vec<&str> = Vec::new();
                for name in known {
                    if !expected.contains(name) {
                        expected.push(name);
                    }
                }
                bail!(
                    "line {}: unknown key `{}`, expected one of: {}",
                    self.line(&entry.key),
                    self.key(key),
                    expected.join(", ")
                );
            }
        }
        Ok(())
    }

    fn line(&self, span: &Range<usize>) -> usize {
        let start = span.start.min(self.text.len());
        self.text.as_bytes()[..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
}

/// toml's error with the line it is about; the quoted line is redacted, as it may hold a
/// password.
fn located(mut error: toml::de::Error, text: &str) -> String {
    error.set_input(Some(text));
    redact_text(error.to_string().trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Server {
        #[allow(dead_code)]
        listen: String,
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let doc =
            Table::parse("[server]\nlisten = \"x\"\nlisen = 3\n[grants]\nstorse = []\n").unwrap();
        let err = doc.get::<Server>("server").unwrap_err().to_string();
        assert!(
            err.contains("key `server`") && err.contains("line 3"),
            "{err}"
        );
        assert!(err.contains("unknown field `lisen`"), "{err}");
        let grants = doc.table("grants").unwrap();
        let err = grants.deny_unknown(&["stores"]).unwrap_err().to_string();
        assert!(
            err.contains("line 5") && err.contains("`grants.storse`"),
            "{err}"
        );
        let err = doc.table("nope").unwrap().key("x");
        assert_eq!(err, "nope.x");
        let err = Table::parse("a = 1\n[a]\n").err().unwrap().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_table_where_a_value_is_expected_is_refused() {
        let doc = Table::parse("server = 3\n[[tenants]]\n").unwrap();
        let err = doc.table("server").err().unwrap().to_string();
        assert!(err.contains("expected a table, found integer"), "{err}");
        assert!(doc.table("tenants").is_err());
        assert!(!doc.table("absent").unwrap().says_anything());
    }
}
