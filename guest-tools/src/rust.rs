//! Rust guests: cargo for `wasm32-wasip2`, whose output is a component already.

use crate::steps::{run, say};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

pub(crate) fn build(dir: &Path, name: &str, out: &Path) -> Result<()> {
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
