//! `hostel new` and `hostel build`: scaffolding and building guests in any supported language
//! with one command, outside this repository too.
//!
//! The guest SDKs and the WIT files are embedded in the binary and written once to the cache
//! folder (`sdk/<content hash>/`), so a guest builds against exactly the interfaces this host
//! serves. Language toolchains that do not come with the system are installed on first use:
//! the `wasm32-wasip2` Rust target with rustup, componentize-py from PyPI into a virtualenv,
//! componentize-js and esbuild from npm, clang and wasi-libc from Debian.

use anyhow::Result;
use std::path::{Path, PathBuf};

mod c;
mod fresh;
mod guest;
mod js;
mod python;
mod rust;
mod scaffold;
mod sdk;
mod steps;

pub use guest::{Language, Wasi, World};

pub use js::{COMPONENTIZE_JS_VERSION, ESBUILD_VERSION, JCO_TRANSPILE_VERSION, TYPESCRIPT_VERSION};
pub use python::COMPONENTIZE_PY_VERSION;
pub use scaffold::new;
pub use sdk::sdk_dir;

use guest::guest_name;

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
        Language::Python => {
            let wasi = if python::is_service(dir)? {
                Wasi::V0_3
            } else {
                Wasi::V0_2
            };
            python::build(dir, &out, world.name_for(language, wasi))?
        }
        Language::Js => js::build(dir, "app.js", &out, world.name(language))?,
        Language::Ts => js::build(dir, "app.ts", &out, world.name(language))?,
        Language::C => c::build(dir, &name, &out, world)?,
    }
    let size = std::fs::metadata(&out)?.len();
    println!("built {} ({} KiB)", out.display(), size / 1024);
    Ok(out)
}
