//! WASI 0.2 (cli, clocks, random, io, filesystem, sockets): wasmtime's own implementation,
//! over a context that is empty unless the tenant's grants say otherwise.
//!
//! By default a guest sees no environment, no arguments, no files, no stdin and no network;
//! its stdout and stderr go to the host log ([`guest_log`]). `grants.env` adds environment
//! variables, `grants.files` read-only folders. Tenant state: the checked grant; request
//! state: the sandbox's `WasiCtx`.

pub mod guest_log;

use super::servers::Servers;
use super::shape::{Capability, ConfigFile, HasView, RequestInfo, TenantInfo, View, WasiReleases};
use crate::sections::Table;
use anyhow::{Context, Result, bail};
use guest_log::{GuestLog, Stream};
use std::collections::BTreeMap;
use std::path::PathBuf;
use wasmtime::component::Linker;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView};

pub struct Wasi;

/// What a tenant's WASI context holds beyond the empty default.
#[derive(Debug, Clone, Default)]
pub struct WasiGrant {
    env: Vec<(String, String)>,
    /// Guest path, host folder.
    files: Vec<(String, PathBuf)>,
}

impl Capability for Wasi {
    const GRANTS: &'static [&'static str] = &["env", "files"];

    type Config = ();
    type Grant = WasiGrant;
    type App = ();
    type Tenant = WasiGrant;
    type Request = WasiCtx;

    fn config(_: &ConfigFile<'_>) -> Result<()> {
        Ok(())
    }

    fn grant(grants: &Table<'_>, _: &(), file: &ConfigFile<'_>) -> Result<WasiGrant> {
        let env: BTreeMap<String, String> = grants.get_or_default("env")?;
        let folders: BTreeMap<String, PathBuf> = grants.get_or_default("files")?;
        let mut files = Vec::new();
        for (guest, host) in folders {
            let host = file.base.join(host);
            if !host.is_dir() {
                bail!(
                    "key `{}.\"{guest}\"`: {} is not a folder",
                    grants.key("files"),
                    host.display()
                );
            }
            files.push((guest, host));
        }
        Ok(WasiGrant {
            env: env.into_iter().collect(),
            files,
        })
    }

    fn app(_: &(), _: &[(&str, &WasiGrant)], _: &mut Servers) -> Result<()> {
        Ok(())
    }

    fn tenant(_: &(), _: &TenantInfo<'_>, grant: &WasiGrant) -> Result<WasiGrant> {
        Ok(grant.clone())
    }

    fn request(grant: &WasiGrant, request: &RequestInfo<'_>) -> Result<WasiCtx> {
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(GuestLog::new(Stream::Stdout, request.span.clone()))
            .stderr(GuestLog::new(Stream::Stderr, request.span.clone()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !grant.env.is_empty() {
            builder.envs(&grant.env);
        }
        for (guest, host) in &grant.files {
            builder
                .preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("cannot open granted folder {}", host.display()))?;
        }
        Ok(builder.build())
    }

    /// WASI 0.2 and 0.3 both, on the one context: a grant means the same in either.
    fn add_to_linker<T: HasView<Self>>(
        linker: &mut Linker<T>,
        releases: WasiReleases,
    ) -> Result<()> {
        wasmtime_wasi::p2::add_to_linker_async(linker)?;
        if releases == WasiReleases::V0_3 {
            wasmtime_wasi::p3::add_to_linker(linker)?;
        }
        Ok(())
    }
}

/// The view wasmtime's WASI implementation works on (a store's `WasiView`).
pub fn ctx(view: View<'_, Wasi>) -> WasiCtxView<'_> {
    WasiCtxView {
        ctx: view.request,
        table: view.table,
    }
}
