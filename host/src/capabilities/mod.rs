//! What the host lends to guests. Each capability is one module: its app-lifetime state
//! (created once), its request-lifetime state (in the sandbox, dropped with it) and the WIT
//! interfaces it adds to the shared `Linker`.
//!
//! Every interface is linked for every guest; what a tenant was not granted answers with an
//! error at call time, so one component binary runs under any grant set.

pub mod config;
pub mod grants;
pub mod guest_log;
pub mod keyvalue;
pub mod outbound_http;
pub mod postgres;
pub mod redis;
pub mod wasi;

use crate::sandbox::SandboxState;
use anyhow::Result;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// The linker shared by all apps: WASI 0.2 (cli, clocks, random, io, filesystem, sockets),
/// `wasi:http`, `wasi:keyvalue`, `wasi:config` and Hostel's own Redis and PostgreSQL interfaces. Guests built against any 0.2.x release link against it.
pub fn linker(engine: &Engine) -> Result<Linker<SandboxState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    keyvalue::add_to_linker(&mut linker)?;
    redis::add_to_linker(&mut linker)?;
    postgres::add_to_linker(&mut linker)?;
    config::add_to_linker(&mut linker)?;
    Ok(linker)
}
