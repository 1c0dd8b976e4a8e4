//! `hostel:host/redis` over host-held Redis pools.

mod pool;

pub use pool::RedisPool;

use crate::sandbox::SandboxState;
use anyhow::Result;
use wasmtime::component::Linker;

pub fn add_to_linker(_linker: &mut Linker<SandboxState>) -> Result<()> {
    Ok(())
}
