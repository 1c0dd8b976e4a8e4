//! `hostel:host/postgres` over host-held PostgreSQL pools. (Placeholder until implemented:
//! creating a PostgreSQL pool fails with a clear message.)

use crate::config::PoolConfig;
use crate::pools::ServerPool;
use crate::sandbox::SandboxState;
use anyhow::{Result, bail};
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::Linker;

pub struct PostgresPool;

impl PostgresPool {
    pub fn new(name: &str, _config: &PoolConfig) -> Result<Arc<PostgresPool>> {
        bail!("pool {name:?}: PostgreSQL pools are not implemented yet")
    }
}

impl ServerPool for PostgresPool {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async { Ok(()) })
    }
    fn reap_idle(&self) {}
    fn close(&self) {}
}

pub fn add_to_linker(_linker: &mut Linker<SandboxState>) -> Result<()> {
    Ok(())
}
