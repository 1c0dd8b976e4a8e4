//! Compiled components on disk, so a restart does not recompile.
//!
//! The key is the SHA-256 of the component's bytes plus wasmtime's compatibility hash of the
//! engine settings: a changed component or a changed engine (version, flags, CPU features)
//! simply misses. Entries are written to a temporary file and renamed into place, so a crash
//! never leaves a half-written entry under a real name; an entry that fails to load anyway
//! (truncated, foreign) is recompiled and replaced.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::hash::Hash;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct CodeCache {
    dir: PathBuf,
    engine_key: String,
}

/// Whether a load came from the cache; reported in the log and used by tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    /// Compiled, taking this long.
    Miss(std::time::Duration),
}

impl CodeCache {
    pub fn new(dir: &Path, engine: &Engine) -> Result<CodeCache> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the code cache folder {} (set `server.code_cache` to a writable folder)",
                dir.display()
            )
        })?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CodeCache {
            dir: dir.to_path_buf(),
            engine_key: hex::encode(&hasher.0.finalize()[..8]),
        })
    }

    /// Compiles `wasm` or loads its compiled form from the cache.
    pub fn component(&self, engine: &Engine, wasm: &[u8]) -> Result<(Component, CacheOutcome)> {
        check_is_component(wasm)?;
        let digest = Sha256::digest(wasm);
        let path = self
            .dir
            .join(format!("{}-{}.cwasm", hex::encode(digest), self.engine_key));

        if path.is_file() {
            let started = Instant::now();
            // SAFETY: the cache folder belongs to the host; entries are only ever written by
            // `store` below from `Engine::precompile_component`, and wasmtime checks the
            // header and engine compatibility before use.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    tracing::info!(
                        entry = %path.display(),
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "code cache hit"
                    );
                    return Ok((component, CacheOutcome::Hit));
                }
                Err(e) => tracing::warn!(
                    entry = %path.display(),
                    "code cache entry unusable, recompiling: {e}"
                ),
            }
        }

        let started = Instant::now();
        tracing::info!(
            size = wasm.len(),
            "compiling a component not seen before (seconds for a large one; cached afterwards)"
        );
        let compiled = engine
            .precompile_component(wasm)
            .map_err(anyhow::Error::from)
            .context("not a valid WebAssembly component")?;
        tracing::info!(
            entry = %path.display(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "code cache miss: compiled"
        );
        if let Err(e) = self.store(&path, &compiled) {
            tracing::warn!("cannot write code cache entry {}: {e:#}", path.display());
        }
        // SAFETY: `compiled` was produced just above by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled) }
            .map_err(anyhow::Error::from)
            .context("cannot load freshly compiled code")?;
        Ok((component, CacheOutcome::Miss(started.elapsed())))
    }

    fn store(&self, path: &Path, compiled: &[u8]) -> Result<()> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(compiled)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// Tells apart the usual mistakes before the compiler gives a less helpful message.
fn check_is_component(wasm: &[u8]) -> Result<()> {
    if wasm.len() < 8 || &wasm[0..4] != b"\0asm" {
        bail!("not a WebAssembly file (no \\0asm header)");
    }
    match wasm[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => bail!(
            "this is a core WebAssembly module, not a component: build Rust guests with \
             `--target wasm32-wasip2`, or wrap a module with `wasm-tools component new`"
        ),
        _ => bail!(
            "unsupported WebAssembly version or layer {:02x?}",
            &wasm[4..8]
        ),
    }
}

/// Feeds what a value hashes into SHA-256: a key that, unlike `DefaultHasher`'s, is the same
/// from one Rust release to the next, so a persisted cache stays valid across host builds.
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component: the header alone.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    #[test]
    fn second_load_hits_and_a_damaged_entry_is_recompiled() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CodeCache::new(dir.path(), &engine).unwrap();
        let (_, first) = cache.component(&engine, EMPTY_COMPONENT).unwrap();
        assert!(matches!(first, CacheOutcome::Miss(_)));
        let (_, second) = cache.component(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(second, CacheOutcome::Hit);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
        }
        let (_, third) = cache.component(&engine, EMPTY_COMPONENT).unwrap();
        assert!(matches!(third, CacheOutcome::Miss(_)));
        let (_, fourth) = cache.component(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(fourth, CacheOutcome::Hit);
    }

    #[test]
    fn tells_modules_and_garbage_from_components() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::new(dir.path(), &engine).unwrap();
        let module = cache.component(&engine, b"\0asm\x01\0\0\0").err().unwrap();
        assert!(module.to_string().contains("core WebAssembly module"));
        let garbage = cache.component(&engine, b"hello").err().unwrap();
        assert!(garbage.to_string().contains("not a WebAssembly file"));
    }
}
