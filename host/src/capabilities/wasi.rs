//! The WASI context of one sandbox: empty unless the tenant's grants say otherwise.
//!
//! By default a guest sees no environment, no arguments, no files, no stdin and no network;
//! its stdout/stderr go to the host log. Grants add environment variables and read-only
//! folders.

use super::guest_log::{GuestLog, Stream};
use crate::config::Tenant;
use anyhow::{Context, Result};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// Grants that shape the WASI context, prepared once per tenant.
#[derive(Debug, Default)]
pub struct WasiGrants {
    env: Vec<(String, String)>,
    files: Vec<(String, std::path::PathBuf)>,
}

impl WasiGrants {
    pub fn from_tenant(tenant: &Tenant) -> WasiGrants {
        WasiGrants {
            env: tenant.env.clone(),
            files: tenant.files.clone(),
        }
    }

    pub fn build(&self, span: &tracing::Span) -> Result<WasiCtx> {
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(GuestLog::new(Stream::Stdout, span.clone()))
            .stderr(GuestLog::new(Stream::Stderr, span.clone()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !self.env.is_empty() {
            builder.envs(&self.env);
        }
        for (guest, host) in &self.files {
            builder
                .preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("cannot open granted folder {}", host.display()))?;
        }
        Ok(builder.build())
    }
}
