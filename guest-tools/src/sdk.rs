//! The guest SDKs and WIT embedded in `hostel`, unpacked once per content into the cache
//! (`sdk/<content hash>/`), and the folders toolchains are installed into.

use crate::steps::say;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
}

/// Where `hostel` unpacks the SDKs and installs toolchains: `hostel/` in the user's cache
/// folder (`$XDG_CACHE_HOME` or `~/.cache` on Linux), as for the host's code cache.
fn cache_dir() -> Result<PathBuf> {
    Ok(dirs::cache_dir()
        .context("no cache folder for this user: set HOME or XDG_CACHE_HOME")?
        .join("hostel"))
}

/// Where language toolchains are installed: `$HOSTEL_GUEST_TOOLS`, else `guest-tools/` in
/// the cache folder.
pub(crate) fn tools_dir() -> Result<PathBuf> {
    match std::env::var_os("HOSTEL_GUEST_TOOLS").filter(|d| !d.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(cache_dir()?.join("guest-tools")),
    }
}

/// Writes the embedded SDKs and WIT to the cache (once per content) and returns the folder:
/// `wit/`, `wit-js/`, `guest-sdk/{rust,rust-service,python,js,c}/`. Worked out once per process.
pub fn sdk_dir() -> Result<PathBuf> {
    static SDK: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(dir) = SDK.get() {
        return Ok(dir.clone());
    }
    let dir = unpack_sdk()?;
    Ok(SDK.get_or_init(|| dir).clone())
}

fn unpack_sdk() -> Result<PathBuf> {
    let mut hash = Sha256::new();
    for (path, bytes) in embedded::FILES {
        hash.update(path.as_bytes());
        hash.update(bytes);
    }
    let digest = hash.finalize();
    let dir = cache_dir()?.join("sdk").join(hex::encode(&digest[..8]));
    if dir.is_dir() {
        return Ok(dir);
    }
    let staging = dir.with_extension(format!("partial-{}", std::process::id()));
    for (path, bytes) in embedded::FILES {
        let target = staging.join(path);
        std::fs::create_dir_all(target.parent().expect("a file has a folder"))?;
        // Outside the workspace the SDKs cannot inherit its settings.
        let bytes: &[u8] = match *path {
            "guest-sdk/rust/Cargo.toml" => STANDALONE_RUST_SDK_MANIFEST.as_bytes(),
            "guest-sdk/rust-service/Cargo.toml" => STANDALONE_RUST_SERVICE_SDK_MANIFEST.as_bytes(),
            _ => bytes,
        };
        std::fs::write(&target, bytes)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    write_js_wit(&staging)?;
    write_encoded_wit(&staging.join("wit-js"), &staging.join("wit-js.wasm"))?;
    // Another `hostel` may have finished first; either copy is the same.
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(dir)
}

/// componentize-js (StarlingMonkey) implements `wasi:http` 0.2.10 — the same interfaces as
/// 0.2.12, which adds nothing to wasi:http — so JavaScript guests build against a copy of the
/// WIT that names that version; the host serves 0.2.x guests alike.
fn write_js_wit(sdk: &Path) -> Result<()> {
    const VERSIONS: [(&str, &str, &str); 2] = [
        (
            "wit/world.wit",
            "include wasi:http/proxy@0.2.12;",
            "include wasi:http/proxy@0.2.10;",
        ),
        (
            "wit/deps/http/http.wit",
            "package wasi:http@0.2.12;",
            "package wasi:http@0.2.10;",
        ),
    ];
    for (path, _) in embedded::FILES
        .iter()
        .filter(|(p, _)| p.starts_with("wit/"))
    {
        let source = sdk.join(path);
        let target = sdk.join("wit-js").join(&path["wit/".len()..]);
        std::fs::create_dir_all(target.parent().expect("a file has a folder"))?;
        let mut text = std::fs::read_to_string(&source)?;
        if let Some((_, from, to)) = VERSIONS.iter().find(|(p, _, _)| p == path) {
            if !text.contains(from) {
                bail!("{path} no longer says {from:?}: update write_js_wit");
            }
            text = text.replace(from, to);
        }
        std::fs::write(&target, text)?;
    }
    Ok(())
}

/// The WIT package in `dir`, with its dependencies under `deps/`.
pub(crate) fn read_wit(dir: &Path) -> Result<(wit_parser::Resolve, wit_parser::PackageId)> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(dir)
        .with_context(|| format!("cannot read the WIT in {}", dir.display()))?;
    Ok((resolve, package))
}

/// Writes the WIT package in `dir` (with its dependencies) in binary form, which tools that
/// cannot read folders of WIT (jco's type generator runs as a sandboxed component) take.
fn write_encoded_wit(dir: &Path, out: &Path) -> Result<()> {
    let (resolve, package) = read_wit(dir)?;
    let bytes = wit_component::encode(&resolve, package).context("cannot encode the WIT")?;
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))
}

const STANDALONE_RUST_SDK_MANIFEST: &str = r#"[package]
name = "hostel-guest"
edition = "2024"
version = "0.1.0"
license = "Apache-2.0"

[dependencies]
wit-bindgen = "0.63"
"#;

const STANDALONE_RUST_SERVICE_SDK_MANIFEST: &str = r#"[package]
name = "hostel-service"
edition = "2024"
version = "0.1.0"
license = "Apache-2.0"

[dependencies]
wasip3 = { version = "0.10", features = ["async-spawn"] }
wit-bindgen = { version = "0.63", features = ["async-spawn"] }
"#;

/// The files `hostel new` writes with the SDK folder's path in them.
const SDK_REFERENCES: [&str; 4] = [
    "Cargo.toml",
    "jsconfig.json",
    "tsconfig.json",
    "compile_flags.txt",
];

/// Points the files `hostel new` wrote at this hostel's SDK folder. The folder is named after
/// the SDK's hash, so a guest scaffolded by an older hostel would otherwise go on building
/// (Rust) and being checked by editors (JavaScript, TypeScript, C) against the old SDK.
pub(crate) fn refresh_sdk_references(dir: &Path, sdk: &Path) -> Result<()> {
    let Some(sdks) = sdk.parent() else {
        return Ok(());
    };
    let (prefix, current) = (format!("{}/", sdks.display()), sdk.display().to_string());
    for name in SDK_REFERENCES {
        let path = dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let updated = replace_sdk_folders(&text, &prefix, &current);
        if updated != text {
            std::fs::write(&path, updated)
                .with_context(|| format!("cannot update {}", path.display()))?;
            say(&format!(
                "{} now refers to this hostel's SDK ({current})",
                path.display()
            ));
        }
    }
    Ok(())
}

/// `text` with every `PREFIX` + SDK hash (16 hex digits) replaced by `current`.
fn replace_sdk_folders(text: &str, prefix: &str, current: &str) -> String {
    const HASH_LEN: usize = 16;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let after = &after[prefix.len()..];
        let hex = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex == HASH_LEN {
            out.push_str(current);
            rest = &after[HASH_LEN..];
        } else {
            out.push_str(prefix);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::replace_sdk_folders;

    #[test]
    fn only_hashed_sdk_folders_under_the_prefix_are_replaced() {
        let prefix = "/home/u/.cache/hostel/sdk/";
        let text = "a = { path = \"/home/u/.cache/hostel/sdk/0123456789abcdef/guest-sdk/rust\" }\n\
                    b = \"/home/u/.cache/hostel/sdk/not-a-hash/x\"\n\
                    c = \"/elsewhere/sdk/0123456789abcdef/x\"\n\
                    d = \"/home/u/.cache/hostel/sdk/fedcba9876543210/guest-sdk/js/hostel.d.ts\"\n";
        let current = "/home/u/.cache/hostel/sdk/aaaaaaaaaaaaaaaa";
        assert_eq!(
            replace_sdk_folders(text, prefix, current),
            "a = { path = \"/home/u/.cache/hostel/sdk/aaaaaaaaaaaaaaaa/guest-sdk/rust\" }\n\
             b = \"/home/u/.cache/hostel/sdk/not-a-hash/x\"\n\
             c = \"/elsewhere/sdk/0123456789abcdef/x\"\n\
             d = \"/home/u/.cache/hostel/sdk/aaaaaaaaaaaaaaaa/guest-sdk/js/hostel.d.ts\"\n"
        );
    }
}
