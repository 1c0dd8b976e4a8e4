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
use crate::metrics::{Metrics, RequestUsage};
use crate::sections::Table;
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
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

    /// Adds what the request used of it to its tenant's bill, as its sandbox ends.
    fn usage(_request: &Self::Request, _usage: &mut RequestUsage) {}

    /// Adds its interfaces to a linker apps are linked with: one for WASI 0.2 apps, one for
    /// WASI 0.3 apps (`releases` says which).
    fn add_to_linker<T: HasView<Self>>(
        linker: &mut Linker<T>,
        releases: WasiReleases,
    ) -> Result<()>;
}

/// The WASI releases a linker serves. WASI 0.2 apps run on an engine without the component
/// model's concurrency (a plain call per guest call, measurably cheaper); WASI 0.3 apps need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasiReleases {
    /// WASI 0.2.x only.
    V0_2,
    /// WASI 0.3.x, and 0.2.x imports beside it (a 0.3 guest's standard library may use them).
    V0_3,
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
    /// Where its capabilities count what they do (see [`crate::metrics`]).
    pub metrics: &'a Arc<Metrics>,
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
    pub calls: &'a CallBudget,
}

/// What the host holds for a request's calls in flight — their arguments, copied out of the
/// guest — bounded by the tenant's memory limit. A WASI 0.2 guest has one call in flight at a
/// time, whose arguments came out of its own memory, so it never reaches the bound; a WASI 0.3
/// guest may start any number of calls from one buffer, each of which the host would copy.
///
/// The counter is made on the first reservation, so a request that makes no async call (every
/// WASI 0.2 one) allocates nothing for it.
pub struct CallBudget {
    limit: usize,
    held: OnceLock<Arc<AtomicUsize>>,
}

impl CallBudget {
    pub fn new(limit: usize) -> CallBudget {
        CallBudget {
            limit,
            held: OnceLock::new(),
        }
    }

    /// Holds `bytes` until the reservation drops, or `None` (held unchanged) when they would
    /// pass the limit.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let held = self.held.get_or_init(Default::default);
        held.try_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            held.checked_add(bytes).filter(|&total| total <= self.limit)
        })
        .ok()?;
        Some(Reservation {
            held: held.clone(),
            bytes,
        })
    }

    /// The refusal a call over the budget gets, as a message for the guest.
    pub fn refusal(&self, bytes: usize) -> String {
        format!(
            "too much in flight: this call's {bytes} bytes (its arguments and the host's state \
             for it) and those of the calls already in flight would pass the request's memory \
             limit of {} bytes; await some calls before starting more",
            self.limit
        )
    }
}

/// What a call in flight holds in the host beyond its arguments (its future in the store's
/// event loop, a command queued on a connection), counted against the [`CallBudget`] so that
/// calls with small arguments cannot be started without bound either.
pub const CALL_OVERHEAD: usize = 1024;

/// Bytes of a [`CallBudget`] held by one call in flight.
pub struct Reservation {
    held: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// How many bytes a call's argument holds in the host: what [`CallBudget`] counts.
pub trait Footprint {
    /// Whether values of this type own heap memory beyond their size.
    const OWNS_HEAP: bool = false;

    fn heap_bytes(&self) -> usize {
        0
    }

    fn footprint(&self) -> usize {
        std::mem::size_of_val(self) + self.heap_bytes()
    }
}

impl Footprint for u8 {}
impl Footprint for i32 {}
impl Footprint for i64 {}
impl Footprint for u64 {}

impl Footprint for String {
    const OWNS_HEAP: bool = true;
    fn heap_bytes(&self) -> usize {
        self.len()
    }
}

impl<T: Footprint> Footprint for Vec<T> {
    const OWNS_HEAP: bool = true;
    fn heap_bytes(&self) -> usize {
        let items = self.len() * std::mem::size_of::<T>();
        if T::OWNS_HEAP {
            items + self.iter().map(Footprint::heap_bytes).sum::<usize>()
        } else {
            items
        }
    }
}

impl<T: Footprint> Footprint for Option<T> {
    const OWNS_HEAP: bool = T::OWNS_HEAP;
    fn heap_bytes(&self) -> usize {
        self.as_ref().map_or(0, Footprint::heap_bytes)
    }
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
            #[allow(dead_code)] // read by the capabilities with request state
            request: &'a mut <$capability as $crate::capabilities::shape::Capability>::Request,
            table: &'a mut ::wasmtime::component::ResourceTable,
            #[allow(dead_code)] // read by the capabilities with WASI 0.3 async calls
            calls: &'a $crate::capabilities::shape::CallBudget,
        }

        struct ViewData;

        impl ::wasmtime::component::HasData for ViewData {
            type Data<'a> = $view<'a>;
        }

        fn view<T: $crate::capabilities::shape::HasView<$capability>>(store: &mut T) -> $view<'_> {
            let $crate::capabilities::shape::View {
                tenant,
                request,
                table,
                calls,
            } = store.view();
            $view {
                tenant,
                request,
                table,
                calls,
            }
        }
    };
}

pub(crate) use host_view;

/// One implementation behind both editions of a capability's WIT: WASI 0.2 guests call
/// `&mut self` host traits that borrow the store for the whole call, WASI 0.3 guests call
/// `async func`s concurrently through an `Accessor`, which must not be held across an await.
/// So every call is written once, as a method of an owned "call" value: `take` gets it out of
/// the resource table (a clone of a handle, or a leased connection taken out for the call),
/// the method awaits with nothing of the store borrowed, and `give_back` returns what it took.
/// This expands to the methods of both host traits for the listed calls; `v0_1 { .. }` and
/// `v0_2 { .. }` add each trait's other methods (constructors, sync calls); `drop` deletes the
/// resource from the table (what it owns is released by its own `Drop`). A WASI 0.3
/// call first reserves its arguments' bytes in the request's [`CallBudget`]; over it, the
/// call answers `$error::Unavailable` at once. Each call runs in a [`crate::traces::pool_call`]
/// span (nothing, with traces off).
///
/// ```ignore
/// resource_calls! {
///     Resource<Transaction> => take_transaction, give_back_transaction;
///     errors Error;
///     v0_1 PostgresView: wit::HostTransaction {}
///     v0_2 PostgresView: wit_async::HostTransaction {}
///     with store ViewData: wit_async::HostTransactionWithStore {}
///     calls {
///         query(sql: String, params: Vec<Value>) -> Rows;
///     }
/// }
/// ```
macro_rules! resource_calls {
    (
        $resource:ty => $take:ident, $give_back:ident;
        errors $error:ty;
        v0_1 $view:ident: $sync_trait:path { $($v0_1:tt)* }
        v0_2 $view2:ident: $async_trait:path { $($v0_2:tt)* }
        with store $data:ident: $($store_trait:ident)::+ { $($with_store:tt)* }
        calls {$(
            $function:ident($($param:ident: $type:ty),*) -> $ok:ty;
        )*}
    ) => {
        impl $sync_trait for $view<'_> {
            $($v0_1)*

            async fn drop(&mut self, resource: $resource) -> ::wasmtime::Result<()> {
                self.table.delete(resource)?;
                Ok(())
            }
            $(
                async fn $function(
                    &mut self,
                    resource: $resource,
                    $($param: $type),*
                ) -> ::wasmtime::Result<Result<$ok, $error>> {
                    #[allow(unused_mut)] // a clone of a handle needs no `mut`, a lease does
                    let mut call = self.$take(&resource)?;
                    let call_future = call.$function($($param),*);
                    let outcome = $crate::traces::pool_call(module_path!(), stringify!($function), call_future).await;
                    self.$give_back(&resource, call)?;
                    Ok(outcome)
                }
            )*
        }

        impl $async_trait for $view2<'_> {
            $($v0_2)*

            fn drop(&mut self, resource: $resource) -> ::wasmtime::Result<()> {
                self.table.delete(resource)?;
                Ok(())
            }
        }

        impl<T> $($store_trait)::+<T> for $data {
            $($with_store)*
            $(
                async fn $function(
                    store: &::wasmtime::component::Accessor<T, Self>,
                    resource: $resource,
                    $($param: $type),*
                ) -> ::wasmtime::Result<Result<$ok, $error>> {
                    let bytes = $crate::capabilities::shape::CALL_OVERHEAD
                        $(+ $crate::capabilities::shape::Footprint::footprint(&$param))*;
                    let reserved = store.with(|mut access| {
                        let view = access.get();
                        view.calls.reserve(bytes).ok_or_else(|| view.calls.refusal(bytes))
                    });
                    let _reservation = match reserved {
                        Ok(reservation) => reservation,
                        Err(why) => return Ok(Err(<$error>::Unavailable(why))),
                    };
                    #[allow(unused_mut)]
                    let mut call = store.with(|mut access| access.get().$take(&resource))?;
                    let call_future = call.$function($($param),*);
                    let outcome = $crate::traces::pool_call(module_path!(), stringify!($function), call_future).await;
                    store.with(|mut access| access.get().$give_back(&resource, call))?;
                    Ok(outcome)
                }
            )*
        }
    };
}

pub(crate) use resource_calls;
