//! `wasi:config/store`: the tenant's variables and secrets (`grants.variables`,
//! `grants.secrets`), read-only. A key the tenant was not given reads as absent. The
//! implementation is wasmtime's own (`wasmtime-wasi-config`); tenant state is the values.

use super::servers::Servers;
use super::shape::{Capability, ConfigFile, HasView, RequestInfo, TenantInfo, WasiReleases};
use crate::secrets::Secret;
use crate::sections::Table;
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use wasmtime::component::Linker;
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

pub struct Variables;

impl Capability for Variables {
    const GRANTS: &'static [&'static str] = &["variables", "secrets"];

    type Config = ();
    /// Variables and secrets together, by name.
    type Grant = Vec<(String, Secret<String>)>;
    type App = ();
    type Tenant = WasiConfigVariables;
    type Request = ();

    fn config(_: &ConfigFile<'_>) -> Result<()> {
        Ok(())
    }

    /// Secrets name the host environment variable their value is read from at startup, so
    /// the value is in no file.
    fn grant(grants: &Table<'_>, _: &(), _: &ConfigFile<'_>) -> Result<Self::Grant> {
        let variables: BTreeMap<String, String> = grants.get_or_default("variables")?;
        let secrets: BTreeMap<String, String> = grants.get_or_default("secrets")?;
        let mut values: Self::Grant = variables
            .iter()
            .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
            .collect();
        for (name, from) in &secrets {
            let key = format!("{}.{name}", grants.key("secrets"));
            if variables.contains_key(name) {
                bail!("key `{key}`: also a variable; one name, one value");
            }
            let Ok(value) = std::env::var(from) else {
                bail!(
                    "key `{key}`: the host environment variable {from:?} is not set (secrets are \
                     read from the environment at startup)"
                );
            };
            values.push((name.clone(), Secret::new(value)));
        }
        Ok(values)
    }

    fn app(_: &(), _: &[(&str, &Self::Grant)], _: &mut Servers) -> Result<()> {
        Ok(())
    }

    fn tenant(_: &(), _: &TenantInfo<'_>, grant: &Self::Grant) -> Result<WasiConfigVariables> {
        Ok(grant
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().clone()))
            .collect())
    }

    fn request(_: &WasiConfigVariables, _: &RequestInfo<'_>) -> Result<()> {
        Ok(())
    }

    fn add_to_linker<T: HasView<Self>>(linker: &mut Linker<T>, _: WasiReleases) -> Result<()> {
        wasmtime_wasi_config::add_to_linker(linker, |store: &mut T| {
            WasiConfig::new(store.view().tenant)
        })?;
        Ok(())
    }
}
