//! `hostel new` and `hostel build`: scaffolding and building guests in any supported language
//! with one command, outside this repository too.
//!
//! The guest SDKs and the WIT files are embedded in the binary and written once to the cache
//! folder (`sdk/<content hash>/`), so a guest builds against exactly the interfaces this host
//! serves. Language toolchains that do not come with the system are installed on first use:
//! the `wasm32-wasip2` Rust target with rustup, componentize-py from PyPI into a virtualenv,
//! componentize-js and esbuild from npm, clang and wasi-libc from Debian.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

mod c;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
}

/// The componentize-py release Python guests are built with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The npm packages JavaScript guests are built with: componentize-js, esbuild (bundling the
/// SDK in), jco's type generator (declarations of the WIT interfaces) and TypeScript (checking
/// TypeScript guests).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
pub const ESBUILD_VERSION: &str = "0.28.2";
pub const JCO_TRANSPILE_VERSION: &str = "0.15.0";
pub const TYPESCRIPT_VERSION: &str = "5.9.3";

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

/// Where `hostel` keeps what it installs and unpacks: `$HOSTEL_GUEST_TOOLS` for toolchains,
/// else `~/.cache/hostel/guest-tools`; the SDK under `~/.cache/hostel/sdk/`.
fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("hostel"));
    }
    let home = std::env::var_os("HOME").context("no HOME or XDG_CACHE_HOME set")?;
    Ok(PathBuf::from(home).join(".cache").join("hostel"))
}

fn tools_dir() -> Result<PathBuf> {
    match std::env::var_os("HOSTEL_GUEST_TOOLS").filter(|d| !d.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(cache_dir()?.join("guest-tools")),
    }
}

/// Writes the embedded SDKs and WIT to the cache (once per content) and returns the folder:
/// `wit/`, `wit-js/`, `guest-sdk/{rust,python,js}/`. Worked out once per process.
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
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let dir = cache_dir()?.join("sdk").join(short);
    if dir.is_dir() {
        return Ok(dir);
    }
    let staging = dir.with_extension(format!("partial-{}", std::process::id()));
    for (path, bytes) in embedded::FILES {
        let target = staging.join(path);
        std::fs::create_dir_all(target.parent().expect("a file has a folder"))?;
        let bytes: &[u8] = if *path == "guest-sdk/rust/Cargo.toml" {
            // Outside the workspace the SDK cannot inherit its settings.
            STANDALONE_RUST_SDK_MANIFEST.as_bytes()
        } else {
            bytes
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
fn read_wit(dir: &Path) -> Result<(wit_parser::Resolve, wit_parser::PackageId)> {
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
wit-bindgen = "0.61"
"#;

fn say(message: &str) {
    eprintln!("==> {message}");
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {what}: is it installed?"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Creates `dir` with a hello guest in `language` and a `hostel.toml` that serves it.
pub fn new(language: Language, dir: &Path) -> Result<()> {
    if dir.exists() {
        bail!("{} already exists: choose a new name", dir.display());
    }
    let name = guest_name(dir)?;
    let sdk = sdk_dir()?;
    let files: Vec<(&str, String)> = match language {
        Language::Rust => vec![
            (
                "Cargo.toml",
                format!(
                    "[package]\nname = \"{name}\"\nedition = \"2024\"\nversion = \"0.1.0\"\n\
                     publish = false\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n\
                     hostel-guest = {{ path = {:?} }}\n\n[profile.release]\nstrip = \"debuginfo\"\n",
                    sdk.join("guest-sdk/rust").display().to_string()
                ),
            ),
            ("src/lib.rs", RUST_HELLO.into()),
            (
                ".cargo/config.toml",
                "# A small stack: every resident page of a sandbox is reset after each request.\n\
                 [target.wasm32-wasip2]\nrustflags = [\"-C\", \"link-arg=-zstack-size=262144\"]\n"
                    .into(),
            ),
            (".gitignore", "target/\nbuild/\n".into()),
        ],
        Language::Python => vec![
            ("app.py", PYTHON_HELLO.into()),
            (".gitignore", "build/\n__pycache__/\n".into()),
        ],
        Language::Js => vec![
            ("app.js", JS_HELLO.into()),
            (".gitignore", "build/\n".into()),
            ("jsconfig.json", editor_config("app.js", &sdk)),
        ],
        Language::Ts => vec![
            ("app.ts", TS_HELLO.into()),
            (".gitignore", "build/\n".into()),
            ("tsconfig.json", editor_config("app.ts", &sdk)),
        ],
        Language::C => vec![
            ("app.c", C_HELLO.into()),
            (".gitignore", "build/\n".into()),
            // clangd finds the SDK header and the bindings `hostel build` generates.
            (
                "compile_flags.txt",
                format!(
                    "--target=wasm32-wasi\n-I{}\n-Ibuild/bindings\n",
                    sdk.join("guest-sdk/c").display()
                ),
            ),
        ],
    };
    for (path, text) in files {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().expect("inside the guest folder"))?;
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    std::fs::write(
        dir.join("hostel.toml"),
        format!(
            "# Serve this guest: hostel build . && hostel serve (which reads ./hostel.toml)\n\
             [apps.{name}]\nroute = \"/\"\ncomponent = \"build/{name}.wasm\"\n{GRANTS_EXAMPLE}"
        ),
    )?;
    println!(
        "created {0} ({1} guest); next: hostel build {0} && hostel serve --config {0}/hostel.toml",
        dir.display(),
        language.name()
    );
    Ok(())
}

/// The scaffolded config grants nothing; this shows how to grant a store and a pool.
const GRANTS_EXAMPLE: &str = r#"
# Guests reach only what is granted. To use the embedded key-value store ("default") and a
# Redis pool ("cache") from this guest, uncomment:
# [stores.default]
# kind = "embedded"
# path = "data/kv.redb"
#
# [pools.cache]
# kind = "redis"
# url = "redis://127.0.0.1:6379"
#
# [grants]
# stores = ["default"]
# pools = ["cache"]
"#;

const RUST_HELLO: &str = r#"use hostel_guest::{Request, Response};

fn hello(req: Request) -> Response {
    Response::text(200, format!("Hello from Hostel! You asked for {}\n", req.path()))
}

hostel_guest::http_handler!(hello);
"#;

const PYTHON_HELLO: &str = r#"import hostel


def hello(req: hostel.Request) -> hostel.Response:
    return hostel.Response.text(200, f"Hello from Hostel! You asked for {req.path}\n")


IncomingHandler = hostel.handler(hello)
"#;

const JS_HELLO: &str = r#"import { serve, text } from "hostel";

serve((request) => text(200, `Hello from Hostel! You asked for ${new URL(request.url).pathname}\n`));
"#;

const TS_HELLO: &str = r#"import { serve, text } from "hostel";

serve((request: Request): Response =>
  text(200, `Hello from Hostel! You asked for ${new URL(request.url).pathname}\n`));
"#;

const C_HELLO: &str = r#"#include "hostel.h"

static hostel_response hello(const hostel_request *req) {
    return hostel_text(200, "Hello from Hostel! You asked for %s\n", req->path);
}

HOSTEL_HANDLER(hello)
"#;

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
    refresh_sdk_references(dir, &sdk_dir()?)?;
    let out_dir = dir.join("build");
    std::fs::create_dir_all(&out_dir)?;
    // Each world has its own output, so that neither passes for the other as up to date.
    let out = match world {
        World::Hostel => out_dir.join(format!("{name}.wasm")),
        World::Proxy => out_dir.join(format!("{name}.proxy.wasm")),
    };
    match language {
        // A Rust guest imports only the interfaces its code uses: one world fits all.
        Language::Rust => build_rust(dir, &name, &out)?,
        Language::Python => build_python(dir, &out, world.name(language))?,
        Language::Js => build_js(dir, "app.js", &out, world.name(language))?,
        Language::Ts => build_js(dir, "app.ts", &out, world.name(language))?,
        Language::C => c::build_c(dir, &name, &out, world)?,
    }
    let size = std::fs::metadata(&out)?.len();
    println!("built {} ({} KiB)", out.display(), size / 1024);
    Ok(out)
}

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
fn refresh_sdk_references(dir: &Path, sdk: &Path) -> Result<()> {
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

fn build_rust(dir: &Path, name: &str, out: &Path) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup: install Rust with rustup (https://rustup.rs)")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t == "wasm32-wasip2")
    {
        say("installing the wasm32-wasip2 Rust target (rustup)");
        run(
            Command::new("rustup").args(["target", "add", "wasm32-wasip2"]),
            "rustup target add wasm32-wasip2",
        )?;
    }
    say(&format!(
        "building {} (Rust, cargo --release)",
        dir.display()
    ));
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(shared) => std::path::absolute(shared)?,
        None => std::path::absolute(dir.join("target"))?,
    };
    // Run from the guest's folder so that its .cargo/config.toml (stack size) applies.
    run(
        Command::new("cargo")
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", &target_dir),
        "cargo build",
    )?;
    let built = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::copy(&built, out).with_context(|| {
        format!(
            "cargo built no {} (is the crate a cdylib?)",
            built.display()
        )
    })?;
    Ok(())
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

/// How TypeScript guests are checked (`tsc` flags, in pairs).
const TS_OPTIONS: [&str; 12] = [
    "--strict",
    "true",
    "--target",
    "es2022",
    "--module",
    "es2022",
    "--moduleResolution",
    "bundler",
    "--lib",
    // The generated declarations type resources as `Disposable`.
    "es2022,esnext.disposable,dom",
    "--noEmit",
    "true",
];

/// A jsconfig/tsconfig.json with which editors check `entry` as `hostel build` does.
fn editor_config(entry: &str, sdk: &Path) -> String {
    let mut options: Vec<String> = TS_OPTIONS
        .chunks(2)
        .map(|o| format!("\"{}\": {}", &o[0][2..], ts_option_json(o[1])))
        .collect();
    options.push("\"checkJs\": true".into());
    format!(
        "{{\n  \"compilerOptions\": {{ {} }},\n  \"files\": [{entry:?}, {:?}]\n}}\n",
        options.join(", "),
        sdk.join("guest-sdk/js/hostel.d.ts").display().to_string()
    )
}

/// A `tsc` flag's value as tsconfig.json wants it.
fn ts_option_json(value: &str) -> String {
    match value {
        "true" | "false" => value.to_string(),
        list if list.contains(',') => format!(
            "[{}]",
            list.split(',')
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other:?}"),
    }
}

fn build_js(dir: &Path, entry: &str, out: &Path, world: &str) -> Result<()> {
    if up_to_date(dir, out) {
        return Ok(());
    }
    let tools = need_js_tools()?;
    let type_tools = need_js_type_tools()?;
    let sdk = sdk_dir()?;
    js_types(&sdk, &type_tools)?;
    if entry.ends_with(".ts") {
        say(&format!("type-checking {} (tsc)", dir.display()));
        run(
            Command::new("node")
                .arg(type_tools.join("node_modules/typescript/bin/tsc"))
                .args(TS_OPTIONS)
                .arg(dir.join(entry))
                .arg(sdk.join("guest-sdk/js/hostel.d.ts"))
                // Diagnostics are errors: keep stdout for what was built.
                .stdout(std::io::stderr()),
            "tsc (the type errors are above)",
        )?;
    }
    say(&format!(
        "componentizing {} (JavaScript, esbuild + componentize-js; ~20 s)",
        dir.display()
    ));
    run(
        Command::new("node")
            .arg(sdk.join("guest-sdk/js/build.mjs"))
            .arg(std::path::absolute(dir.join(entry))?)
            .arg(std::path::absolute(out)?)
            .arg(sdk.join("wit-js"))
            .arg(world)
            .arg(sdk.join("guest-sdk/js"))
            .arg(&tools),
        "componentize-js",
    )
}

/// Declarations of the WIT interfaces for JavaScript and TypeScript guests, generated once per
/// SDK into `guest-sdk/js/types/` (which `hostel.d.ts` references).
fn js_types(sdk: &Path, tools: &Path) -> Result<()> {
    let types = sdk.join("guest-sdk/js/types");
    if types.join("handler.d.ts").is_file() {
        return Ok(());
    }
    let staging = types.with_extension(format!("partial-{}", std::process::id()));
    run(
        Command::new("node")
            .arg(sdk.join("guest-sdk/js/types.mjs"))
            .arg(sdk.join("wit-js.wasm"))
            .arg("hostel:host/handler")
            .arg(&staging)
            .arg(tools),
        "jco type generation",
    )?;
    if std::fs::rename(&staging, &types).is_err() {
        let _ = std::fs::remove_dir_all(&staging); // another `hostel` finished first
    }
    Ok(())
}

/// The npm packages that build JavaScript guests, at pinned versions.
fn need_js_tools() -> Result<PathBuf> {
    npm_tools(
        "js",
        &[
            ("@bytecodealliance/componentize-js", COMPONENTIZE_JS_VERSION),
            ("esbuild", ESBUILD_VERSION),
        ],
    )
}

/// The npm packages that type JavaScript and TypeScript guests. A folder of their own: jco's
/// dependencies would otherwise rearrange componentize-js's.
fn need_js_type_tools() -> Result<PathBuf> {
    npm_tools(
        "js-types",
        &[
            ("@bytecodealliance/jco-transpile", JCO_TRANSPILE_VERSION),
            ("typescript", TYPESCRIPT_VERSION),
        ],
    )
}

/// Installs `packages` (name, version) with npm into `<guest tools>/<folder>` unless they are
/// there at those versions; returns the folder.
fn npm_tools(folder: &str, packages: &[(&str, &str)]) -> Result<PathBuf> {
    let dir = tools_dir()?.join(folder);
    let installed = |(name, version): &(&str, &str)| {
        std::fs::read_to_string(dir.join("node_modules").join(name).join("package.json"))
            .is_ok_and(|json| json.contains(&format!("\"version\": \"{version}\"")))
    };
    if packages.iter().all(installed) {
        return Ok(dir);
    }
    let specs: Vec<String> = packages.iter().map(|(n, v)| format!("{n}@{v}")).collect();
    say(&format!(
        "installing {} (npm) into {}",
        specs.join(", "),
        dir.display()
    ));
    std::fs::create_dir_all(&dir)?;
    run(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .args(&specs),
        "npm install (JavaScript guests need Node.js 20+ and npm; Debian: apt-get install nodejs npm)",
    )?;
    Ok(dir)
}

fn build_python(dir: &Path, out: &Path, world: &str) -> Result<()> {
    if up_to_date(dir, out) {
        return Ok(());
    }
    let componentize = need_componentize_py()?;
    let sdk = sdk_dir()?;
    say(&format!(
        "componentizing {} (Python, componentize-py; ~10 s)",
        dir.display()
    ));
    run(
        Command::new(componentize)
            .arg("-d")
            .arg(sdk.join("wit"))
            .args(["-w", world, "componentize", "app", "-p"])
            .arg(dir)
            .arg("-p")
            .arg(sdk.join("guest-sdk/python"))
            .arg("-o")
            .arg(out)
            .stdout(std::process::Stdio::null()),
        "componentize-py",
    )
}

/// componentize-py at the pinned version, in a virtualenv of its own.
fn need_componentize_py() -> Result<PathBuf> {
    let venv = tools_dir()?.join("python");
    let bin = venv.join("bin/componentize-py");
    let version = Command::new(&bin).arg("--version").output();
    if version.is_ok_and(|v| {
        String::from_utf8_lossy(&v.stdout).trim()
            == format!("componentize-py {COMPONENTIZE_PY_VERSION}")
    }) {
        return Ok(bin);
    }
    say(&format!(
        "installing componentize-py {COMPONENTIZE_PY_VERSION} (PyPI) into {}",
        venv.display()
    ));
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv (install Python 3.10+; Debian: apt-get install python3 python3-venv)",
    )?;
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            &format!("componentize-py=={COMPONENTIZE_PY_VERSION}"),
        ]),
        "pip install componentize-py",
    )?;
    Ok(bin)
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
