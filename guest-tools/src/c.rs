//! C guests: Debian's clang + lld + wasi-libc compile a preview1 reactor module; the bindings
//! come from wit-bindgen's C generator and the component from wit-component with the preview1
//! reactor adapter, all linked into `hostel` itself, so C needs nothing beyond the Debian
//! packages.

use crate::fresh::up_to_date;
use crate::guest::World;
use crate::sdk::{read_wit, sdk_dir};
use crate::steps::{run, say};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

/// The Debian packages a C guest needs: the compiler, the wasm linker, the C library for
/// `wasm32-wasi` and the compiler's runtime builtins for wasm.
const DEBIAN_PACKAGES: [&str; 4] = ["clang", "lld", "wasi-libc", "libclang-rt-dev-wasm32"];

/// The world C guests are built for; the SDK's `hostel.c` includes its header, `handler.h`.
const WORLD: &str = "hostel:host/handler";

pub(crate) fn build(dir: &Path, name: &str, out: &Path, world: World) -> Result<()> {
    if world == World::Proxy {
        bail!(
            "C guests are built for the hostel world only (the SDK's hostel.c uses its \
             bindings); a C guest that uses no store or pool still runs on any wasi:http host"
        );
    }
    if up_to_date(dir, out) {
        return Ok(());
    }
    let clang = need_c_tools()?;
    let sdk = sdk_dir()?;
    let build = dir.join("build");
    let bindings = build.join("bindings");
    generate_bindings(&sdk.join("wit"), &bindings)?;

    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "c"))
        .collect();
    sources.sort();
    let core = build.join(format!("{name}.core.wasm"));
    say(&format!(
        "compiling {} (C, clang --target=wasm32-wasi)",
        dir.display()
    ));
    run(
        Command::new(&clang)
            .args(["--target=wasm32-wasi", "-mexec-model=reactor", "-O2"])
            .args(["-Wall", "-Wextra", "-Wno-unused-parameter"])
            .arg("-I")
            .arg(&bindings)
            .arg("-I")
            .arg(sdk.join("guest-sdk/c"))
            .args(&sources)
            .arg(sdk.join("guest-sdk/c/hostel.c"))
            .arg(bindings.join("handler.c"))
            // Carries the world's types in a custom section for wit-component.
            .arg(bindings.join("handler_component_type.o"))
            .arg("-o")
            .arg(&core),
        "clang",
    )?;

    let module = std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .context("the compiled module carries no usable component type (handler_component_type.o)")?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("cannot load the WASI preview1 reactor adapter")?
        .validate(true)
        .encode()
        .with_context(|| {
            format!(
                "cannot make a component of {} (does app.c call a function no interface of \
                 {WORLD} provides?)",
                core.display()
            )
        })?;
    std::fs::write(out, component).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Writes wit-bindgen's C bindings for the hostel world into `dir`: `handler.h`, `handler.c`
/// and `handler_component_type.o`.
fn generate_bindings(wit: &Path, dir: &Path) -> Result<()> {
    let (mut resolve, package) = read_wit(wit)?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("wit-bindgen cannot generate C bindings")?;
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in files.iter() {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Finds clang with a wasm32-wasi C library and runtime, installing the Debian packages when
/// running as root and missing; returns the compiler to run.
fn need_c_tools() -> Result<PathBuf> {
    let clang = PathBuf::from(std::env::var_os("HOSTEL_CLANG").unwrap_or_else(|| "clang".into()));
    if c_tools_ready(&clang) {
        return Ok(clang);
    }
    let install = format!("apt-get install {}", DEBIAN_PACKAGES.join(" "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        bail!(
            "C guests need clang, wasm-ld and wasi-libc for wasm32-wasi: sudo {install} \
             (or point HOSTEL_CLANG at a clang that has them)"
        );
    }
    say(&format!("installing the C toolchain ({install})"));
    run(
        Command::new("apt-get").args(["update", "-qq"]),
        "apt-get update",
    )?;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(DEBIAN_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &install,
    )?;
    if !c_tools_ready(&clang) {
        bail!(
            "{} still cannot build for wasm32-wasi after {install}",
            clang.display()
        );
    }
    Ok(clang)
}

/// Whether `clang` finds wasm-ld, the reactor start file of wasi-libc and the wasm builtins.
fn c_tools_ready(clang: &Path) -> bool {
    let found = |arg: &str| {
        Command::new(clang)
            .args(["--target=wasm32-wasi", arg])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .is_some_and(|path| path.is_absolute() && path.exists())
    };
    found("-print-prog-name=wasm-ld")
        && found("-print-file-name=crt1-reactor.o")
        && found("-print-libgcc-file-name")
}
