//! What a guest is to the tools: its language (told by its files), its name (its folder's)
//! and the WIT world it is built for.

use anyhow::{Context, Result, bail};
use std::path::Path;

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
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
            Language::Ts => "TypeScript",
            Language::C => "C",
        }
    }

    /// Which language the guest in `dir` is written in, by the files it has.
    pub fn of(dir: &Path) -> Result<Language> {
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
pub fn guest_name(dir: &Path) -> Result<String> {
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

/// The WASI release a new guest is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Wasi {
    /// A `wasi:http/proxy` handler (every language).
    #[value(name = "0.2")]
    V0_2,
    /// A `wasi:http/service` with async handlers and async pool calls (Rust, Python).
    #[value(name = "0.3")]
    V0_3,
}

impl World {
    /// The world's name for a guest of `language` written for `wasi`.
    pub fn name_for(self, language: Language, wasi: Wasi) -> &'static str {
        match (self, wasi) {
            (World::Hostel, Wasi::V0_3) => "hostel:host/service@0.2.0",
            (World::Proxy, Wasi::V0_3) => "wasi:http/service@0.3.2",
            (_, Wasi::V0_2) => self.name(language),
        }
    }

    /// The world's name for a toolchain; JavaScript guests name wasi:http 0.2.10.
    pub fn name(self, language: Language) -> &'static str {
        match (self, language) {
            (World::Hostel, _) => "hostel:host/handler",
            (World::Proxy, Language::Js | Language::Ts) => "wasi:http/proxy@0.2.10",
            (World::Proxy, _) => "wasi:http/proxy@0.2.12",
        }
    }
}
