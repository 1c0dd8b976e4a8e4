//! How the tools talk and run toolchains: a line per step on stderr, and commands whose
//! failure names them.

use anyhow::{Context, Result, bail};
use std::process::Command;

/// A line on stderr saying what `hostel` does now.
pub fn say(message: &str) {
    eprintln!("==> {message}");
}

/// Runs a toolchain's command; a failure names it.
pub fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {what}: is it installed?"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
