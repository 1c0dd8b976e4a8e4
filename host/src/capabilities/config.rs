//! `wasi:config/store`: the tenant's variables and secrets (`grants.variables`,
//! `grants.secrets`), read-only. A key the tenant was not given reads as absent. The
//! implementation is wasmtime's own (`wasmtime-wasi-config`).

use crate::sandbox::SandboxState;
use wasmtime::component::Linker;
use wasmtime_wasi_config::WasiConfig;

pub fn add_to_linker(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    wasmtime_wasi_config::add_to_linker(linker, |state: &mut SandboxState| {
        WasiConfig::new(&state.tenant_and_table().0.config)
    })
}
