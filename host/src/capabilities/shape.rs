//! The one shape every capability has.
//!
//! A capability is a type implementing [`Capability`]. It names its state at each lifetime
//! and how to build it from the one before:
//!
//! | lifetime | type | built by | from |
//! |---|---|---|---|
//! | host config | `Config` | [`Capability::config`] | its own top-level sections ([`Capability::SECTIONS`]) |
//! | tenant config | `Grant` | [`Capability::grant`] | its keys of the tenant's `grants` ([`Capability::GRANTS`]) |
//! | app (the host) | `App` | [`Capability::app`] | `Config` and every tenant's `Grant`, once at startup |
//! | tenant | `Tenant` | [`Capability::tenant`] | `App` and the tenant's `Grant`, when its apps load |
//! | request | `Request` | [`Capability::request`] | `Tenant`, for each sandbox; dropped with its store |
//!
//! and adds its WIT interfaces to the linker ([`Capability::add_to_linker`]), generic over the
//! store type, whose [`View`] of it — its tenant's state, its request's state and the
//! sandbox's resource table — is all a guest call can reach. A capability with WIT of its own
//! implements the generated host traits on a view struct of its own made from that `View`,
//! with a `HasData` marker, as `wasmtime-wasi-http` does: `host_view!` declares the three.
//! Servers its app state keeps connections to (Redis, PostgreSQL) are registered with
//! [`Servers`], which connects them at startup and closes them after the last request.

use super::servers::{PoolConfig, Servers};
use crate::limits::Limits;
use crate::sections::Table;
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi_http::WasiHttpView;

pub trait Capability: Sized + Send + Sync + 'static {
    /// Top-level tables of the config file it owns (`stores`).
    const SECTIONS: &'static [&'static str] = &[];
    /// Keys of a tenant's `grants` it reads (`stores`); capabilities may share one (`pools`).
    const GRANTS: &'static [&'static str] = &[];

    type Config: Debug + Clone + Send + Sync;
    type Grant: Debug + Clone + Send + Sync;
    type App: Send + Sync;
    type Tenant: Send + Sync;
    type Request: Send;

    /// Reads and checks its sections of the config file.
    fn config(file: &ConfigFile<'_>) -> Result<Self::Config>;

    /// Reads and checks its keys of one tenant's grants; errors name the key.
    fn grant(
        grants: &Table<'_>,
        config: &Self::Config,
        file: &ConfigFile<'_>,
    ) -> Result<Self::Grant>;

    /// Builds its app-lifetime state; `granted` is every tenant's grant, by tenant name.
    fn app(
        config: &Self::Config,
        granted: &[(&str, &Self::Grant)],
        servers: &mut Servers,
    ) -> Result<Self::App>;

    /// Builds one tenant's state, when its apps load.
    fn tenant(
        app: &Self::App,
        tenant: &TenantInfo<'_>,
        grant: &Self::Grant,
    ) -> Result<Self::Tenant>;

    /// Builds one request's state, owned by its sandbox's store.
    fn request(tenant: &Self::Tenant, request: &RequestInfo<'_>) -> Result<Self::Request>;

    /// Adds its interfaces to the linker every app is linked with.
    fn add_to_linker<T: HasView<Self>>(linker: &mut Linker<T>) -> Result<()>;
}

/// What a capability may read of the config file beyond its own sections.
pub struct ConfigFile<'i> {
    /// The whole file; a capability reads only its [`Capability::SECTIONS`].
    pub root: &'i Table<'i>,
    /// The config file's folder: relative paths are relative to it.
    pub base: &'i Path,
    /// Every `[pools]` entry, validated (see [`super::servers`]).
    pub pools: &'i BTreeMap<String, PoolConfig>,
}

/// The tenant whose state is being built.
pub struct TenantInfo<'a> {
    pub name: &'a str,
    /// The prefix the host puts before this tenant's keys in shared stores (`tenant:NAME`).
    pub namespace: &'a Arc<str>,
    pub limits: &'a Limits,
}

/// The request whose sandbox is being made.
pub struct RequestInfo<'a> {
    /// The request's span (id, tenant, app): what the guest logs go under.
    pub span: &'a tracing::Span,
}

/// What a capability's host functions work on: borrowed from the sandbox's store for one call.
pub struct View<'a, C: Capability> {
    pub tenant: &'a C::Tenant,
    pub request: &'a mut C::Request,
    pub table: &'a mut ResourceTable,
}

/// A store type that lends capability `C` its view. Every store also gives wasmtime's own WASI
/// and `wasi:http` views, which the implementations linked from `wasmtime-wasi(-http)` need.
pub trait HasView<C: Capability>: WasiView + WasiHttpView + Send + 'static {
    fn view(&mut self) -> View<'_, C>;
}

/// Declares, in a capability's module, the struct its generated host traits are implemented
/// on — `$view<'a>`, holding the tenant's state and the sandbox's resource table — with its
/// `HasData` marker `ViewData` and `view`, the getter its `add_to_linker` passes:
/// `wit::add_to_linker::<_, ViewData>(linker, view::<T>)`. (A struct of the capability's own,
/// rather than `View`, so that its impls live with it.)
macro_rules! host_view {
    ($view:ident for $capability:ty) => {
        /// What the generated host traits are implemented on: the tenant's state and the
        /// sandbox's resource table, borrowed from the store for one call.
        pub struct $view<'a> {
            tenant: &'a <$capability as $crate::capabilities::shape::Capability>::Tenant,
            table: &'a mut ::wasmtime::component::ResourceTable,
        }

        struct ViewData;

        impl ::wasmtime::component::HasData for ViewData {
            type Data<'a> = $view<'a>;
        }

        fn view<T: $crate::capabilities::shape::HasView<$capability>>(store: &mut T) -> $view<'_> {
            let $crate::capabilities::shape::View { tenant, table, .. } = store.view();
            $view { tenant, table }
        }
    };
}

pub(crate) use host_view;
