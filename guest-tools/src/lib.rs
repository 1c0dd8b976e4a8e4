//! `hostel new` and `hostel build`: scaffolding and building guests in any supported language
//! with one command, outside this repository too.
//!
//! The guest SDKs and the WIT files are embedded in the binary and written once to the cache
//! folder (`sdk/<content hash>/`), so a guest builds against exactly the interfaces this host
//! serves. Language toolchains that do not come with the system are installed on first use:
//! the `wasm32-wasip2` Rust target with rustup, componentize-py from PyPI into a virtualenv,
//! componentize-js and esbuild from npm, clang and wasi-libc from Debian.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

mod c;
mod js;
mod python;
mod rust;
mod scaffold;
mod sdk;

pub use js::{COMPONENTIZE_JS_VERSION, ESBUILD_VERSION, JCO_TRANSPILE_VERSION, TYPESCRIPT_VERSION};
pub use python::COMPONENTIZE_PY_VERSION;
pub use scaffold::new;
pub use sdk::sdk_dir;

/// The guest languages `hostel new` and `hostel build` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    #[value(alias = "javascript")]
    Js,
    /// JavaScript's toolchain, with the source type-checked by `tsc` first.
    #[value(alias = "typescript")]
    Ts,
    C,
}

impl Language {
    fn name(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
            Language::Ts => "TypeScript",
            Language::C => "C",
        }
    }

    /// Which language the guest in `dir` is written in, by the files it has.
    fn of(dir: &Path) -> Result<Language> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Language::Rust)
        } else if dir.join("app.py").is_file() {
            Ok(Language::Python)
        } else if dir.join("app.js").is_file() {
            Ok(Language::Js)
        } else if dir.join("app.ts").is_file() {
            Ok(Language::Ts)
        } else if dir.join("app.c").is_file() {
            Ok(Language::C)
        } else {
            bail!(
                "{} holds no guest hostel can build: expected Cargo.toml (Rust), app.py \
                 (Python), app.js (JavaScript), app.ts (TypeScript) or app.c (C). Start one with \
                 `hostel new rust|python|js|ts|c NAME`",
                dir.display()
            )
        }
    }
}

/// The guest's name: its folder's name, which must suit a crate and a config key.
fn guest_name(dir: &Path) -> Result<String> {
    let name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no usable folder name", dir.display()))?;
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!(
            "{name:?}: a guest's folder name must start with a letter and use only letters, digits, '-' and '_'"
        );
    }
    Ok(name)
}

/// Which WIT world a guest is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum World {
    /// `hostel:host/handler`: wasi:http plus the host's stores and pools.
    #[default]
    Hostel,
    /// `wasi:http/proxy` alone: the component runs on any wasi:http host (no stores or pools).
    Proxy,
}

impl World {
    /// The world's name for a toolchain; JavaScript guests name wasi:http 0.2.10.
    fn name(self, language: Language) -> &'static str {
        match (self, language) {
            (World::Hostel, _) => "hostel:host/handler",
            (World::Proxy, Language::Js | Language::Ts) => "wasi:http/proxy@0.2.10",
            (World::Proxy, _) => "wasi:http/proxy@0.2.12",
        }
    }
}

/// Builds the guest in `dir` into `dir/build/NAME.wasm` (`NAME.proxy.wasm` for the proxy
/// world), installing its toolchain if needed; returns the component's path.
pub fn build(dir: &Path, world: World) -> Result<PathBuf> {
    let language = Language::of(dir)?;
    let name = guest_name(dir)?;
    sdk::refresh_sdk_references(dir, &sdk_dir()?)?;
    let out_dir = dir.join("build");
    std::fs::create_dir_all(&out_dir)?;
    // Each world has its own output, so that neither passes for the other as up to date.
    let out = match world {
        World::Hostel => out_dir.join(format!("{name}.wasm")),
        World::Proxy => out_dir.join(format!("{name}.proxy.wasm")),
    };
    match language {
        // A Rust guest imports only the interfaces its code uses: one world fits all.
        Language::Rust => rust::build(dir, &name, &out)?,
        Language::Python => python::build(dir, &out, world.name(language))?,
        Language::Js => js::build(dir, "app.js", &out, world.name(language))?,
        Language::Ts => js::build(dir, "app.ts", &out, world.name(language))?,
        Language::C => c::build(dir, &name, &out, world)?,
    }
    let size = std::fs::metadata(&out)?.len();
    println!("built {} ({} KiB)", out.display(), size / 1024);
    Ok(out)
}

/// The newest modification time of the guest's sources (not its build output) and of the
/// unpacked SDK (a new folder whenever the SDK or WIT changes).
fn newest_source(dir: &Path) -> Option<std::time::SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<std::time::SystemTime>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "build" || name == "__pycache__" || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(Some(modified));
            }
        }
    }
    let mut newest = sdk_dir()
        .ok()
        .and_then(|sdk| std::fs::metadata(sdk).and_then(|m| m.modified()).ok());
    walk(dir, &mut newest);
    newest
}

/// Whether `out` is newer than every source of the guest in `dir` and than the SDK.
fn up_to_date(dir: &Path, out: &Path) -> bool {
    let built = std::fs::metadata(out).and_then(|m| m.modified()).ok();
    let fresh = built.is_some() && built >= newest_source(dir);
    if fresh {
        say(&format!("{} is up to date", out.display()));
    }
    fresh
}

/// A line on stderr saying what `hostel` does now.
fn say(message: &str) {
    eprintln!("==> {message}");
}

/// Runs a toolchain's command; a failure names it.
fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {what}: is it installed?"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
