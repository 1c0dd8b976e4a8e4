//! What the host lends to guests: one module per capability, each in the shape of
//! [`shape::Capability`], and the one list of them (`capabilities!` below) from which the
//! host's config, app, tenant and request state and its linker are assembled.
//!
//! Every interface is linked for every guest; what a tenant was not granted answers with an
//! error at call time, so one component binary runs under any grant set.
//!
//! To add a capability: write its WIT in `wit/` (and add it to the `hostel:host/handler`
//! world), write its module here implementing [`Capability`], and add one line to the list.

pub mod grants;
pub mod keyvalue;
pub mod nats;
pub mod outbound_http;
pub mod postgres;
pub mod redis;
pub mod servers;
pub mod shape;
pub mod variables;
pub mod wasi;

use crate::sections::Table;
use anyhow::{Context, Result};
use servers::Servers;
use shape::{Capability, ConfigFile, HasView, RequestInfo, TenantInfo, View};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi_http::WasiHttpView;

/// The data of a store the capabilities are linked into: what each capability's [`View`] is
/// borrowed from.
pub trait StoreData: WasiView + WasiHttpView + Send + 'static {
    fn capabilities(&mut self) -> Parts<'_>;
}

/// A store's capability state, borrowed for one host call.
pub struct Parts<'a> {
    pub tenant: &'a TenantCapabilities,
    pub request: &'a mut RequestCapabilities,
    pub table: &'a mut ResourceTable,
    pub calls: &'a shape::CallBudget,
}

/// Declares the capabilities, one `field: Type` each, in the order they are built and linked.
/// Generates the state of every lifetime with one field per capability, the functions that
/// build each from the one before, and each capability's [`View`] of a store.
macro_rules! capabilities {
    ($($field:ident: $capability:ty),* $(,)?) => {
        /// Every capability's config, checked.
        #[derive(Debug, Clone)]
        pub struct CapabilityConfig {
            $(pub $field: <$capability as Capability>::Config,)*
        }

        /// One tenant's grants, checked, one field per capability.
        #[derive(Debug, Clone)]
        pub struct CapabilityGrants {
            $(pub $field: <$capability as Capability>::Grant,)*
        }

        /// App-lifetime state of every capability: built once, shared by every tenant.
        pub struct AppCapabilities {
            $($field: <$capability as Capability>::App,)*
        }

        /// One tenant's state of every capability.
        pub struct TenantCapabilities {
            $($field: <$capability as Capability>::Tenant,)*
        }

        /// One request's state of every capability, owned by its sandbox's store.
        pub struct RequestCapabilities {
            $($field: <$capability as Capability>::Request,)*
        }

        /// Top-level config tables the capabilities own.
        pub const SECTIONS: &[&[&str]] = &[$(<$capability as Capability>::SECTIONS),*];
        /// Keys of a tenant's `grants` the capabilities read.
        pub const GRANTS: &[&[&str]] = &[$(<$capability as Capability>::GRANTS),*];

        impl CapabilityConfig {
            pub fn new(file: &ConfigFile<'_>) -> Result<CapabilityConfig> {
                Ok(CapabilityConfig {
                    $($field: <$capability as Capability>::config(file)?,)*
                })
            }
        }

        impl CapabilityGrants {
            /// Reads one tenant's `grants` table; a key no capability reads is refused.
            pub fn new(
                grants: &Table<'_>,
                config: &CapabilityConfig,
                file: &ConfigFile<'_>,
            ) -> Result<CapabilityGrants> {
                grants.deny_unknown(&GRANTS.concat())?;
                Ok(CapabilityGrants {
                    $($field: <$capability as Capability>::grant(grants, &config.$field, file)?,)*
                })
            }
        }

        impl AppCapabilities {
            /// `tenants`: every tenant's grants, by tenant name.
            pub fn new(
                config: &CapabilityConfig,
                tenants: &[(&str, &CapabilityGrants)],
                servers: &mut Servers,
            ) -> Result<AppCapabilities> {
                Ok(AppCapabilities {
                    $($field: {
                        let granted: Vec<_> =
                            tenants.iter().map(|(name, g)| (*name, &g.$field)).collect();
                        <$capability as Capability>::app(&config.$field, &granted, servers)?
                    },)*
                })
            }
        }

        impl TenantCapabilities {
            pub fn new(
                app: &AppCapabilities,
                tenant: &TenantInfo<'_>,
                grants: &CapabilityGrants,
            ) -> Result<TenantCapabilities> {
                Ok(TenantCapabilities {
                    $($field: <$capability as Capability>::tenant(
                        &app.$field,
                        tenant,
                        &grants.$field,
                    )
                    .with_context(|| format!("tenant {:?}", tenant.name))?,)*
                })
            }
        }

        impl RequestCapabilities {
            /// What the request used of every capability, for its tenant's bill.
            pub fn usage(&self) -> crate::metrics::RequestUsage {
                let mut usage = crate::metrics::RequestUsage::default();
                $(<$capability as Capability>::usage(&self.$field, &mut usage);)*
                usage
            }

            pub fn new(
                tenant: &TenantCapabilities,
                request: &RequestInfo<'_>,
            ) -> Result<RequestCapabilities> {
                Ok(RequestCapabilities {
                    $($field: <$capability as Capability>::request(&tenant.$field, request)?,)*
                })
            }
        }

        /// Adds every capability's interfaces to `linker`.
        pub fn add_to_linker<T: StoreData>(
            linker: &mut Linker<T>,
            releases: shape::WasiReleases,
        ) -> Result<()> {
            $(<$capability as Capability>::add_to_linker(linker, releases)?;)*
            Ok(())
        }

        $(
            impl<T: StoreData> HasView<$capability> for T {
                fn view(&mut self) -> View<'_, $capability> {
                    let Parts { tenant, request, table, calls } = self.capabilities();
                    View {
                        tenant: &tenant.$field,
                        request: &mut request.$field,
                        table,
                        calls,
                    }
                }
            }
        )*
    };
}

capabilities! {
    wasi: wasi::Wasi,
    http: outbound_http::OutboundHttp,
    redis: redis::Redis,
    postgres: postgres::Postgres,
    keyvalue: keyvalue::KeyValue,
    variables: variables::Variables,
}
