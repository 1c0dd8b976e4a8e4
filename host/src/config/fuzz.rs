//! Fuzzing the config loader: documents built from the schema's own tables and keys with
//! values of every type (and keys it does not know), and arbitrary text. The loader never
//! panics, and every error names the file, where in it (a key or a line), and why.

use super::Config;
use proptest::prelude::*;
use std::path::Path;

const FILE: &str = "/nonexistent/fuzz/hostel.toml";

const TABLES: &[&str] = &[
    "server",
    "defaults.limits",
    "admin",
    "grants",
    "pools.p",
    "pools.q",
    "stores.s",
    "apps.a",
    "tenants.t",
    "tenants.t.grants",
    "tenants.t.limits",
    "tenants.t.apps.x",
    "tenants.u",
    "metrics",
    "bogus",
];

const KEYS: &[&str] = &[
    "listen",
    "code_cache",
    "shutdown_grace",
    "drain_delay",
    "access_log",
    "max_instances",
    "memory_keep_resident",
    "shared_hosts",
    "memory",
    "timeout",
    "concurrency",
    "request_body",
    "response_body",
    "outbound_calls",
    "apps",
    "operator_token_sha256",
    "state",
    "open",
    "enabled",
    "kind",
    "url",
    "admin_url",
    "ca_file",
    "max_connections",
    "acquire_timeout",
    "idle_timeout",
    "connect",
    "path",
    "hosts",
    "route",
    "component",
    "outbound",
    "outbound_networks",
    "env",
    "files",
    "stores",
    "pools",
    "variables",
    "secrets",
    "admin_token_sha256",
    "unknown_key",
];

/// Strings that mean something somewhere in the schema, and some that mean nothing.
const WORDS: &[&str] = &[
    "",
    " ",
    "redis",
    "postgres",
    "embedded",
    "memcached",
    "eager",
    "lazy",
    "required",
    "redis://127.0.0.1:6379",
    "rediss://:pw@h:1/2",
    "postgres://u:p@h/db?sslmode=verify-full",
    "postgres://h/db?sslmode=nope",
    "postgresql://u@h",
    "http://x",
    "127.0.0.1:0",
    "[::1]:8080",
    "0.0.0.0:99999",
    "10s",
    "1m 30s",
    "-1",
    "0",
    "64MiB",
    "1GB",
    "lots",
    "/",
    "/api",
    "api",
    "/a/../b",
    "*",
    "*.x",
    "a.*.b",
    "http://[::1]:9000",
    "https://u:p@x",
    "ftp://x",
    "10.0.0.0/8",
    "::1",
    "10.0.0.0/99",
    "a b",
    "t",
    "p",
    "s",
    "../../etc",
    "/etc/passwd",
    "HOME",
    "NOT_SET_ANYWHERE",
    "é✓",
    "\u{0}",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "\\PC{0,12}",
    ]
}

/// A TOML value, written out.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        word().prop_map(|w| format!("{w:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        (0u32..100_000).prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(", "))),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..3).prop_map(
                |kv| {
                    let pairs: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                    format!("{{ {} }}", pairs.join(", "))
                }
            ),
        ]
    })
}

/// A document of tables, each with some keys (duplicates within a table are TOML errors).
fn document() -> impl Strategy<Value = String> {
    let table = (
        proptest::sample::select(TABLES),
        proptest::collection::btree_map(proptest::sample::select(KEYS), value(), 0..5),
    );
    proptest::collection::vec(table, 0..6).prop_map(|tables| {
        let mut seen = std::collections::BTreeSet::new();
        let mut text = String::new();
        for (name, keys) in tables {
            if !seen.insert(name) {
                continue;
            }
            text.push_str(&format!("[{name}]\n"));
            for (key, value) in keys {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        text
    })
}

/// The property: parsing ends (no panic) and an error says where and why.
fn check(text: &str) -> Result<(), TestCaseError> {
    let Err(error) = Config::parse(text, Path::new(FILE)) else {
        return Ok(());
    };
    let message = format!("{error:#}");
    prop_assert!(message.contains(FILE), "no file name: {message}");
    let located = [
        "key `", "line ", "[pools.", "[stores.", "tenant ", "tenants ", "host ",
    ]
    .iter()
    .any(|mark| message.contains(mark));
    prop_assert!(located, "no key or line: {message}\n--- for:\n{text}");
    prop_assert!(message.len() > FILE.len() + 20, "no reason: {message}");
    Ok(())
}

proptest! {
    #![proptest_config(hostel_tests::fuzz_config(3000, file!()))]

    #[test]
    fn documents_of_the_schema_load_or_say_where_and_why(text in document()) {
        check(&text)?;
    }

    #[test]
    fn arbitrary_text_loads_or_says_where_and_why(text in "\\PC{0,200}") {
        check(&text)?;
    }
}

#[test]
fn known_hard_cases_say_where_and_why() {
    for text in [
        "[tenants.t]\nhosts = [\"a\"]\n[tenants.u]\nhosts = [\"A:1\"]\n",
        "[pools.p]\nkind = \"postgres\"\n",
        "[pools.p]\nkind = \"postgres\"\nurl = \"x\"\nadmin_url = \"y\"\n",
        "[pools.p]\nkind = \"redis\"\nadmin_url = \"redis://h\"\n",
        "[server]\nshared_hosts = [\"a b\"]\n",
        "[grants]\noutbound_networks = [\"10.0.0.0/99\"]\n",
        "[apps.a]\nroute = \"/\"\ncomponent = \"x.wasm\"\n",
        "\u{feff}[server]\n",
        "[[server]]\n",
    ] {
        check(text).unwrap();
    }
}
