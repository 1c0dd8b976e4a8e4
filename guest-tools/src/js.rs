//! JavaScript and TypeScript guests: `tsc` checks TypeScript, esbuild bundles the SDK in,
//! componentize-js (StarlingMonkey) makes the component; jco generates the WIT's declarations.

use crate::fresh::up_to_date;
use crate::sdk::{sdk_dir, tools_dir};
use crate::steps::{run, say};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The npm packages JavaScript guests are built with: componentize-js, esbuild (bundling the
/// SDK in), jco's type generator (declarations of the WIT interfaces) and TypeScript (checking
/// TypeScript guests).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
pub const ESBUILD_VERSION: &str = "0.28.2";
pub const JCO_TRANSPILE_VERSION: &str = "0.15.0";
pub const TYPESCRIPT_VERSION: &str = "5.9.3";

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
pub(crate) fn editor_config(entry: &str, sdk: &Path) -> String {
    let mut options = serde_json::Map::new();
    for pair in TS_OPTIONS.chunks(2) {
        options.insert(pair[0][2..].to_string(), ts_option_json(pair[1]));
    }
    options.insert("checkJs".into(), true.into());
    let declarations = sdk.join("guest-sdk/js/hostel.d.ts");
    let config = serde_json::json!({
        "compilerOptions": options,
        "files": [entry, declarations.display().to_string()],
    });
    let mut text = serde_json::to_string_pretty(&config).expect("JSON values serialise");
    text.push('\n');
    text
}

/// A `tsc` flag's value as tsconfig.json wants it: a boolean, a list or a string.
fn ts_option_json(value: &str) -> serde_json::Value {
    match value {
        "true" => true.into(),
        "false" => false.into(),
        list if list.contains(',') => list.split(',').collect::<Vec<_>>().into(),
        other => other.into(),
    }
}

pub(crate) fn build(dir: &Path, entry: &str, out: &Path, world: &str) -> Result<()> {
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
