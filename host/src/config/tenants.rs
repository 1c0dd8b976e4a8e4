//! Tenants and their apps: `[tenants.NAME]` (hosts, limits, grants, apps, admin token), and the
//! top-level `[apps]` and `[grants]` of the default tenant for the one-tenant case. A tenant's
//! `grants` are read by the capabilities (see [`crate::capabilities`]); who may claim which
//! host and route is decided by [`crate::routes`].

use super::server::{TokenHash, parse_token_hash};
use crate::capabilities::CapabilityConfig;
use crate::capabilities::CapabilityGrants;
use crate::capabilities::shape::ConfigFile;
use crate::limits::{Limits, LimitsSection};
use crate::names;
use crate::routes::{self, Claim};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The name of the tenant that top-level `[apps]` belong to.
pub const DEFAULT_TENANT: &str = "default";

/// The keys of a `[tenants.NAME]` table.
const TENANT_KEYS: &[&str] = &["hosts", "grants", "limits", "apps", "admin_token_sha256"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppSection {
    /// Path prefix, matched on whole segments; the longest prefix wins. It starts with '/'
    /// (see [`routes::normalize_route`]).
    route: String,
    /// Path to the `.wasm` component, relative to the config file.
    component: PathBuf,
}

#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub name: String,
    /// Host names it serves (normalised; empty: any host).
    pub hosts: Vec<String>,
    pub limits: Limits,
    /// What its guests may reach beyond their sandbox, per capability.
    pub grants: CapabilityGrants,
    pub apps: Vec<AppConfig>,
    /// The tenant's own admin token, if it has one.
    pub admin_token: Option<TokenHash>,
}

/// An app as the config names it.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub name: String,
    pub route: String,
    pub component: PathBuf,
    /// Where this app sits in the file, for error messages: `tenants.acme.apps.api`.
    pub key: String,
}

/// Every tenant of the file: the default tenant (if the file has top-level `[apps]` or no
/// `[tenants]`), then `[tenants]` in name order. Hosts and routes are checked across tenants.
pub fn resolve(
    file: &ConfigFile<'_>,
    defaults: &LimitsSection,
    capabilities: &CapabilityConfig,
    shared_hosts: &[String],
) -> Result<Vec<TenantConfig>> {
    let root = file.root;
    let apps: BTreeMap<String, AppSection> = root.get_or_default("apps")?;
    let grants = root.table("grants")?;
    let tenants = root.table("tenants")?.tables()?;
    let mut resolved = Vec::new();
    if !apps.is_empty() || tenants.is_empty() {
        if !apps.is_empty() && tenants.contains_key(DEFAULT_TENANT) {
            bail!(
                "top-level [apps] belong to the tenant \"{DEFAULT_TENANT}\", which is also \
                 declared under [tenants]: move the apps into [tenants.{DEFAULT_TENANT}.apps]"
            );
        }
        let tenant = Parts {
            name: DEFAULT_TENANT,
            hosts: Vec::new(),
            limits: LimitsSection::default()
                .resolve(defaults)
                .context("key `defaults.limits`")?,
            grants: CapabilityGrants::new(&grants, capabilities, file)?,
            apps,
            apps_key: root.key("apps"),
            admin_token: None,
        };
        resolved.push(tenant.resolve(file)?);
    } else if grants.says_anything() {
        bail!(
            "key `grants`: top-level grants apply to the default tenant, but this file declares \
             [tenants] and no top-level [apps]; put grants under [tenants.NAME.grants]"
        );
    }
    for (name, table) in &tenants {
        names::check(name, table.path())?;
        table.deny_unknown(TENANT_KEYS)?;
        let limits: LimitsSection = table.get_or_default("limits")?;
        let admin_token = table
            .get::<String>("admin_token_sha256")?
            .map(|hash| parse_token_hash(&hash))
            .transpose()
            .with_context(|| format!("key `{}`", table.key("admin_token_sha256")))?;
        let tenant = Parts {
            name,
            hosts: table.get_each("hosts", host_name)?,
            limits: limits
                .resolve(defaults)
                .with_context(|| format!("key `{}`", table.key("limits")))?,
            grants: CapabilityGrants::new(&table.table("grants")?, capabilities, file)?,
            apps: table.get_or_default("apps")?,
            apps_key: table.key("apps"),
            admin_token,
        };
        resolved.push(tenant.resolve(file)?);
    }
    routes::check_host_owners(
        resolved.iter().map(|t| (t.name.as_str(), &t.hosts[..])),
        shared_hosts,
    )?;
    check_routes(&resolved)?;
    Ok(resolved)
}

/// A tenant read but for its apps.
struct Parts<'a> {
    name: &'a str,
    hosts: Vec<String>,
    limits: Limits,
    grants: CapabilityGrants,
    apps: BTreeMap<String, AppSection>,
    /// Where its apps are: `apps` or `tenants.NAME.apps`.
    apps_key: String,
    admin_token: Option<TokenHash>,
}

impl Parts<'_> {
    fn resolve(self, file: &ConfigFile<'_>) -> Result<TenantConfig> {
        let mut apps = Vec::new();
        for (name, app) in self.apps {
            let key = format!("{}.{name}", self.apps_key);
            names::check(&name, &key)?;
            let route = routes::normalize_route(&app.route)
                .with_context(|| format!("key `{key}.route`: {:?}", app.route))?;
            let component = file.base.join(&app.component);
            if !component.is_file() {
                bail!(
                    "key `{key}.component`: file not found: {} (paths are relative to the \
                     config file's folder; build components first)",
                    component.display()
                );
            }
            apps.push(AppConfig {
                name,
                route,
                component,
                key,
            });
        }
        Ok(TenantConfig {
            name: self.name.to_string(),
            hosts: self.hosts,
            limits: self.limits,
            grants: self.grants,
            apps,
            admin_token: self.admin_token,
        })
    }
}

/// A host name as routing compares it (see [`routes::normalize_host`]).
pub fn host_name(text: &str) -> Result<String> {
    routes::normalize_host(text).context("not a host name")
}

/// The routes of every tenant's apps, checked against each other by the ownership rule
/// ([`routes::conflict`]).
fn check_routes(tenants: &[TenantConfig]) -> Result<()> {
    let mut claims: Vec<Claim<'_>> = Vec::new();
    for tenant in tenants {
        for app in &tenant.apps {
            let claim = Claim {
                tenant: &tenant.name,
                app: &app.name,
                hosts: &tenant.hosts,
                route: &app.route,
            };
            if let Some(conflict) = routes::conflict(claims.iter().copied(), &claim) {
                bail!(
                    "key `{}.route`: {:?} cannot be mounted: {conflict}",
                    app.key,
                    app.route
                );
            }
            claims.push(claim);
        }
    }
    Ok(())
}
