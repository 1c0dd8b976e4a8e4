//! The TOML configuration: what the operator writes, checked once at startup.
//!
//! Parsing is strict (`deny_unknown_fields`) so a typo is an error, not a silently ignored key.
//! Everything a request needs later is resolved here: relative paths against the config file's
//! folder, limits layered tenant → `[defaults.limits]` → built-in defaults.

use crate::capabilities::outbound_http::egress::{self, OutboundRule};
use crate::routes::{self, Claim};
use crate::secrets::{Secret, redact_url};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(test)]
mod fuzz;
mod units;
pub use units::{ByteSize, HumanDuration};

/// The file as written. See the README's config reference for every key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub defaults: DefaultsSection,
    /// Apps of the default tenant, for the common one-tenant case.
    #[serde(default)]
    pub apps: BTreeMap<String, AppSection>,
    /// Grants of the default tenant.
    #[serde(default)]
    pub grants: GrantsSection,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSection>,
    /// Key-value stores guests may be granted, by name.
    #[serde(default)]
    pub stores: BTreeMap<String, StoreSection>,
    /// Redis and PostgreSQL connection pools guests may be granted, by name.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolSection>,
    /// The admin API (deploys to the running host); off without this section.
    pub admin: Option<AdminSection>,
}

/// The admin API's listener, who may use it and where deployments are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Its own listener, loopback unless the operator says otherwise.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// SHA-256 (hex) of the operator's bearer token, which manages every tenant. `hostel token`
    /// makes a token and prints its hash; the config never holds the token itself.
    pub operator_token_sha256: String,
    /// Folder of deployed components (content-addressed) and the deployment manifest,
    /// relative to the config file.
    #[serde(default = "default_state")]
    pub state: PathBuf,
}

/// A Redis or PostgreSQL server the host keeps connections to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    pub kind: PoolKind,
    /// `redis://[user:password@]host:port[/db]` or `postgres://user[:password]@host[:port]/db`:
    /// the login every statement uses. A PostgreSQL pool with a `url` serves one tenant.
    pub url: Option<Secret<String>>,
    /// PostgreSQL only, instead of `url`: an administrative login (CREATEROLE and CREATEDB)
    /// through which the host gives every tenant granted the pool a login role and a database
    /// of its own, so that tenants sharing the pool cannot reach each other's objects.
    pub admin_url: Option<Secret<String>>,
    /// A PEM file of the CA certificate(s) that sign the server's certificate, trusted
    /// instead of the public roots (relative to the config file).
    pub ca_file: Option<PathBuf>,
    /// Connections open at most: for PostgreSQL every query's (per tenant with `admin_url`);
    /// for Redis those leased for transactions (plain commands share one multiplexed
    /// connection).
    pub max_connections: Option<u32>,
    /// How long a request waits for a free connection before it gets an error.
    pub acquire_timeout: Option<HumanDuration>,
    /// Connections unused this long are closed.
    pub idle_timeout: Option<HumanDuration>,
    /// When to connect; see [`Connect`].
    pub connect: Option<Connect>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    Redis,
    Postgres,
}

/// When a pool connects to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Connect {
    /// At startup; if the server is unreachable, warn, serve anyway and retry in the background.
    #[default]
    Eager,
    /// On first use.
    Lazy,
    /// At startup; if the server is unreachable, refuse to start.
    Required,
}

/// Whose login a pool's connections use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tenancy {
    /// The login in `url`, for the one tenant granted the pool (Redis: every tenant granted
    /// it, with keys namespaced by the host).
    Dedicated,
    /// A login role and database per tenant, provisioned through the admin login in `url`.
    PerTenant,
}

/// A CA certificate file, read and checked at startup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

/// A pool after validation. Two entries with equal `PoolConfig`s share one pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolConfig {
    pub kind: PoolKind,
    /// The login: dedicated, or the admin login of a [`Tenancy::PerTenant`] pool.
    pub url: Secret<String>,
    pub tenancy: Tenancy,
    pub ca: Option<CaFile>,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect: Connect,
}

pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl PoolSection {
    fn resolve(self, base: &Path) -> Result<PoolConfig> {
        let (url, tenancy) = match (self.url, self.admin_url, self.kind) {
            (Some(url), None, _) => (url, Tenancy::Dedicated),
            (None, Some(url), PoolKind::Postgres) => (url, Tenancy::PerTenant),
            (None, Some(_), PoolKind::Redis) => bail!(
                "key `admin_url`: only PostgreSQL pools take an admin login (Redis keys are                  namespaced per tenant by the host): use `url`"
            ),
            (Some(_), Some(_), _) => bail!(
                "keys `url` and `admin_url`: give one — `url` for a pool one tenant uses,                  `admin_url` for a pool tenants share with a login and database each"
            ),
            (None, None, _) => bail!("key `url`: missing (the server to connect to)"),
        };
        let key = match tenancy {
            Tenancy::Dedicated => "url",
            Tenancy::PerTenant => "admin_url",
        };
        check_url_scheme(self.kind, url.expose(), key)?;
        let max_connections = self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            bail!("key `max_connections`: must be at least 1");
        }
        let ca = self
            .ca_file
            .map(|path| read_ca_file(&base.join(path)))
            .transpose()
            .context("key `ca_file`")?;
        Ok(PoolConfig {
            kind: self.kind,
            url,
            tenancy,
            ca,
            max_connections,
            acquire_timeout: self
                .acquire_timeout
                .map_or(DEFAULT_ACQUIRE_TIMEOUT, |d| d.0),
            idle_timeout: self.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0),
            connect: self.connect.unwrap_or_default(),
        })
    }
}

/// Checks that `url` has a scheme a pool of `kind` speaks.
fn check_url_scheme(kind: PoolKind, url: &str, key: &str) -> Result<()> {
    let schemes: &[&str] = match kind {
        PoolKind::Redis => &["redis://", "rediss://"],
        PoolKind::Postgres => &["postgres://", "postgresql://"],
    };
    if !schemes.iter().any(|s| url.starts_with(s)) {
        bail!(
            "key `{key}`: {:?} is not a {} URL for a {kind:?} pool",
            redact_url(url),
            schemes.join(" or "),
        );
    }
    Ok(())
}

/// Reads a PEM file that must hold at least one certificate.
fn read_ca_file(path: &Path) -> Result<CaFile> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    use rustls_pki_types::pem::PemObject;
    let certificates = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certificates.is_empty() {
        bail!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        );
    }
    Ok(CaFile {
        path: path.to_path_buf(),
        pem,
    })
}

impl PoolConfig {
    /// A Redis pool at `url` with every setting at its default.
    pub fn redis(url: Secret<String>, ca: Option<CaFile>) -> PoolConfig {
        PoolConfig {
            kind: PoolKind::Redis,
            url,
            tenancy: Tenancy::Dedicated,
            ca,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect: Connect::default(),
        }
    }

    /// The server's address with any password left out, for log lines and errors.
    pub fn address(&self) -> String {
        redact_url(self.url.expose())
    }
}

/// A key-value store held by the host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum StoreSection {
    /// Persistent on local disk, no server needed.
    Embedded {
        /// The database file, relative to the config file.
        path: PathBuf,
    },
    /// A Redis server, shared through one multiplexed connection.
    Redis {
        /// `redis://[user:password@]host:port[/db]` (`rediss://` for TLS)
        url: Secret<String>,
        /// As for pools: the CA that signs the server's certificate.
        ca_file: Option<PathBuf>,
    },
}

/// Where a key-value store lives, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Embedded(PathBuf),
    /// On the Redis pool with these settings (shared with a `[pools]` entry that has them).
    Redis(PoolConfig),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Folder for compiled code; defaults to `$XDG_CACHE_HOME/hostel` or `~/.cache/hostel`.
    pub code_cache: Option<PathBuf>,
    /// How long in-flight requests may run on after SIGINT/SIGTERM.
    #[serde(default = "default_grace")]
    pub shutdown_grace: HumanDuration,
    /// Sandboxes alive at once across all tenants: sizes the pooling allocator.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Written linear memory of a recycled sandbox slot that is reset by copying and kept
    /// mapped; beyond it pages are released with madvise and fault back in on next use.
    #[serde(default = "default_keep_resident")]
    pub memory_keep_resident: ByteSize,
    /// Host names more than one tenant may list; on them, tenants' routes may not overlap.
    #[serde(default)]
    pub shared_hosts: Vec<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            code_cache: None,
            shutdown_grace: default_grace(),
            max_instances: default_max_instances(),
            memory_keep_resident: default_keep_resident(),
            shared_hosts: Vec::new(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}
fn default_state() -> PathBuf {
    PathBuf::from("state")
}
fn default_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_keep_resident() -> ByteSize {
    ByteSize(4 << 20)
}
fn default_max_instances() -> u32 {
    1000
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSection {
    #[serde(default)]
    pub limits: LimitsSection,
}

/// Per-request quotas; every key optional so tenants override only what they name.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Linear memory per instance.
    pub memory: Option<ByteSize>,
    /// Wall-clock deadline for one request, guest CPU and waiting alike.
    pub timeout: Option<HumanDuration>,
    /// Requests of this tenant served at once; more get 429.
    pub concurrency: Option<u32>,
    /// Largest request body accepted; larger gets 413.
    pub request_body: Option<ByteSize>,
    /// Largest response body an app may send; a larger one is cut off (500 if declared).
    pub response_body: Option<ByteSize>,
    /// Outbound HTTP requests one request's guest may make; more fail with an error value.
    pub outbound_calls: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    /// Host names served by this tenant (port ignored); empty means any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub grants: GrantsSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub apps: BTreeMap<String, AppSection>,
    /// SHA-256 (hex) of this tenant's admin token: it manages this tenant's apps only.
    pub admin_token_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    /// Path prefix, matched on whole segments; the longest prefix wins.
    pub route: String,
    /// Path to the `.wasm` component, relative to the config file.
    pub component: PathBuf,
}

/// What a tenant's guests may reach beyond their sandbox. Everything is denied by default.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsSection {
    /// Outbound HTTP destinations: `https://api.example.com`, `http://127.0.0.1:9000`,
    /// `https://*.example.com` or a bare host name (any scheme, default port).
    #[serde(default)]
    pub outbound: Vec<String>,
    /// Non-public address ranges (CIDR) or addresses the granted hosts may resolve to:
    /// loopback, private and link-local addresses are refused unless named here or in a rule.
    #[serde(default)]
    pub outbound_networks: Vec<String>,
    /// Environment variables visible to guests (values, not inherited from the host).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host folders visible to guests: guest path → host folder (read-only).
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    /// Key-value stores (names from `[stores]`) guests may open.
    #[serde(default)]
    pub stores: Vec<String>,
    /// Redis and PostgreSQL pools (names from `[pools]`) guests may use.
    #[serde(default)]
    pub pools: Vec<String>,
    /// Configuration values guests read through `wasi:config/store`.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Secrets guests read through `wasi:config/store`, like variables: each names the host
    /// environment variable its value is read from at startup, so the value is in no file.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// Built-in defaults, used where neither the tenant nor `[defaults.limits]` says otherwise.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONCURRENCY: u32 = 256;
pub const DEFAULT_REQUEST_BODY: u64 = 16 << 20;
pub const DEFAULT_RESPONSE_BODY: u64 = 1 << 30;
pub const DEFAULT_OUTBOUND_CALLS: u32 = 100;

/// Effective limits of one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory: u64,
    pub timeout: Duration,
    pub concurrency: u32,
    pub request_body: u64,
    pub response_body: u64,
    pub outbound_calls: u32,
}

/// The configuration after validation: paths absolute, limits resolved, nothing left to check.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub code_cache: PathBuf,
    pub shutdown_grace: Duration,
    pub max_instances: u32,
    pub memory_keep_resident: u64,
    pub tenants: Vec<Tenant>,
    /// Key-value stores by name.
    pub stores: BTreeMap<String, StoreConfig>,
    /// Redis and PostgreSQL pools by name.
    pub pools: BTreeMap<String, PoolConfig>,
    pub admin: Option<AdminConfig>,
}

/// SHA-256 of a bearer token.
pub type TokenHash = [u8; 32];

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub operator_token: TokenHash,
    /// Deployed components and the manifest (resolved against the config's folder).
    pub state: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub hosts: Vec<String>,
    pub limits: Limits,
    pub outbound: Vec<OutboundRule>,
    pub outbound_networks: Vec<ipnet::IpNet>,
    pub env: Vec<(String, String)>,
    pub files: Vec<(String, PathBuf)>,
    /// Names of the key-value stores granted.
    pub stores: Vec<String>,
    /// Names of the pools granted.
    pub pools: Vec<String>,
    /// `wasi:config/store` values: variables and secrets together.
    pub config_values: Vec<(String, Secret<String>)>,
    pub apps: Vec<App>,
    /// The tenant's own admin token, if it has one.
    pub admin_token: Option<TokenHash>,
}

#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub route: String,
    pub component: PathBuf,
    /// Where this app sits in the file, for error messages: `tenants.acme.apps.api`.
    pub key: String,
}

/// The name of the tenant that top-level `[apps]` belong to.
pub const DEFAULT_TENANT: &str = "default";

impl Config {
    /// Reads, parses and validates a config file. Every error names the file, the key and why.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            // toml quotes the offending line, which may hold a password.
            let why = crate::secrets::redact_text(e.to_string().trim_end());
            anyhow::anyhow!("{}: {why}", path.display())
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        file.resolve(path, &base)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))
    }
}

impl ConfigFile {
    fn resolve(self, source: &Path, base: &Path) -> Result<Config> {
        let defaults = &self.defaults.limits;
        let mut stores = BTreeMap::new();
        for (name, section) in self.stores {
            let store = match section {
                StoreSection::Embedded { path } => StoreConfig::Embedded(base.join(path)),
                StoreSection::Redis { url, ca_file } => {
                    check_url_scheme(PoolKind::Redis, url.expose(), &format!("stores.{name}.url"))?;
                    let ca = ca_file
                        .map(|path| read_ca_file(&base.join(path)))
                        .transpose()
                        .with_context(|| format!("key `stores.{name}.ca_file`"))?;
                    StoreConfig::Redis(PoolConfig::redis(url, ca))
                }
            };
            stores.insert(name, store);
        }
        let mut pools = BTreeMap::new();
        for (name, section) in self.pools {
            check_name(&name, &format!("pools.{name}"))?;
            let pool = section
                .resolve(base)
                .with_context(|| format!("in [pools.{name}]"))?;
            pools.insert(name, pool);
        }
        let mut tenants = Vec::new();

        if !self.apps.is_empty() || self.tenants.is_empty() {
            if self.tenants.contains_key(DEFAULT_TENANT) && !self.apps.is_empty() {
                bail!(
                    "top-level [apps] belong to the tenant \"{DEFAULT_TENANT}\", which is also \
                     declared under [tenants]: move the apps into [tenants.{DEFAULT_TENANT}.apps]"
                );
            }
            let section = TenantSection {
                hosts: Vec::new(),
                grants: self.grants.clone(),
                limits: LimitsSection::default(),
                apps: self.apps,
                admin_token_sha256: None,
            };
            tenants.push(resolve_tenant(DEFAULT_TENANT, "", section, defaults, base)?);
        } else if !self.grants.outbound.is_empty()
            || !self.grants.outbound_networks.is_empty()
            || !self.grants.variables.is_empty()
            || !self.grants.secrets.is_empty()
            || !self.grants.env.is_empty()
            || !self.grants.files.is_empty()
            || !self.grants.stores.is_empty()
            || !self.grants.pools.is_empty()
        {
            bail!(
                "key `grants`: top-level grants apply to the default tenant, but this file \
                 declares [tenants] and no top-level [apps]; put grants under [tenants.NAME.grants]"
            );
        }
        for (name, section) in self.tenants {
            let key = format!("tenants.{name}.");
            tenants.push(resolve_tenant(&name, &key, section, defaults, base)?);
        }
        let shared_hosts = each(&self.server.shared_hosts, "server.shared_hosts", host_name)?;
        routes::check_host_owners(
            tenants.iter().map(|t| (t.name.as_str(), &t.hosts[..])),
            &shared_hosts,
        )?;
        check_routes(&tenants)?;
        for tenant in &tenants {
            for store in &tenant.stores {
                if !stores.contains_key(store) {
                    bail!(
                        "tenant {:?} is granted store {store:?}, but there is no [stores.{store}] section",
                        tenant.name
                    );
                }
            }
            for pool in &tenant.pools {
                if !pools.contains_key(pool) {
                    bail!(
                        "tenant {:?} is granted pool {pool:?}, but there is no [pools.{pool}] section",
                        tenant.name
                    );
                }
            }
        }

        let code_cache = match self.server.code_cache {
            Some(dir) => base.join(dir),
            None => default_cache_dir()?,
        };
        if self.server.max_instances == 0 {
            bail!("key `server.max_instances`: must be at least 1");
        }
        let admin = self
            .admin
            .map(|admin| -> Result<AdminConfig> {
                Ok(AdminConfig {
                    listen: admin.listen,
                    operator_token: parse_token_hash(&admin.operator_token_sha256)
                        .context("key `admin.operator_token_sha256`")?,
                    state: base.join(admin.state),
                })
            })
            .transpose()?;
        if admin.is_none()
            && let Some(tenant) = tenants.iter().find(|t| t.admin_token.is_some())
        {
            bail!(
                "key `tenants.{}.admin_token_sha256`: there is no [admin] section, so no admin \
                 API to use the token with",
                tenant.name
            );
        }
        Ok(Config {
            source: source.to_path_buf(),
            listen: self.server.listen,
            code_cache,
            shutdown_grace: self.server.shutdown_grace.0,
            max_instances: self.server.max_instances,
            memory_keep_resident: self.server.memory_keep_resident.0,
            tenants,
            stores,
            pools,
            admin,
        })
    }
}

fn resolve_tenant(
    name: &str,
    key: &str,
    section: TenantSection,
    defaults: &LimitsSection,
    base: &Path,
) -> Result<Tenant> {
    check_name(name, key.trim_end_matches('.'))?;
    let limits =
        resolve_limits(&section.limits, defaults).with_context(|| format!("key `{key}limits`"))?;
    let outbound = each(
        &section.grants.outbound,
        &format!("{key}grants.outbound"),
        OutboundRule::parse,
    )?;
    let outbound_networks = each(
        &section.grants.outbound_networks,
        &format!("{key}grants.outbound_networks"),
        egress::parse_network,
    )?;
    let mut files = Vec::new();
    for (guest, host) in section.grants.files {
        let host = base.join(host);
        if !host.is_dir() {
            bail!(
                "key `{key}grants.files.\"{guest}\"`: {} is not a folder",
                host.display()
            );
        }
        files.push((guest, host));
    }
    let hosts = each(&section.hosts, &format!("{key}hosts"), host_name)?;
    let mut apps = Vec::new();
    for (app_name, app) in section.apps {
        let app_key = format!("{key}apps.{app_name}");
        check_name(&app_name, &app_key)?;
        let route = routes::normalize_route(&app.route)
            .with_context(|| format!("key `{app_key}.route`: {:?}", app.route))?;
        let component = base.join(&app.component);
        if !component.is_file() {
            bail!(
                "key `{app_key}.component`: file not found: {} (paths are relative to the \
                 config file's folder; build components first)",
                component.display()
            );
        }
        apps.push(App {
            name: app_name,
            route,
            component,
            key: app_key,
        });
    }
    let mut config_values: Vec<(String, Secret<String>)> = section
        .grants
        .variables
        .iter()
        .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
        .collect();
    for (name, from) in &section.grants.secrets {
        if section.grants.variables.contains_key(name) {
            bail!("key `{key}grants.secrets.{name}`: also a variable; one name, one value");
        }
        let value = std::env::var(from).map_err(|_| {
            anyhow::anyhow!(
                "key `{key}grants.secrets.{name}`: the host environment variable {from:?} is \
                 not set (secrets are read from the environment at startup)"
            )
        })?;
        config_values.push((name.clone(), Secret::new(value)));
    }
    let admin_token = section
        .admin_token_sha256
        .as_deref()
        .map(parse_token_hash)
        .transpose()
        .with_context(|| format!("key `{key}admin_token_sha256`"))?;
    Ok(Tenant {
        admin_token,
        config_values,
        name: name.to_string(),
        hosts,
        limits,
        outbound,
        outbound_networks,
        env: section.grants.env.into_iter().collect(),
        files,
        stores: section.grants.stores,
        pools: section.grants.pools,
        apps,
    })
}

fn resolve_limits(tenant: &LimitsSection, defaults: &LimitsSection) -> Result<Limits> {
    let limits = Limits {
        memory: tenant
            .memory
            .or(defaults.memory)
            .map_or(DEFAULT_MEMORY, |b| b.0),
        timeout: tenant
            .timeout
            .or(defaults.timeout)
            .map_or(DEFAULT_TIMEOUT, |d| d.0),
        concurrency: tenant
            .concurrency
            .or(defaults.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY),
        request_body: tenant
            .request_body
            .or(defaults.request_body)
            .map_or(DEFAULT_REQUEST_BODY, |b| b.0),
        response_body: tenant
            .response_body
            .or(defaults.response_body)
            .map_or(DEFAULT_RESPONSE_BODY, |b| b.0),
        outbound_calls: tenant
            .outbound_calls
            .or(defaults.outbound_calls)
            .unwrap_or(DEFAULT_OUTBOUND_CALLS),
    };
    if limits.memory < 64 << 10 {
        bail!(
            "memory must be at least 64KiB (one wasm page), got {}",
            limits.memory
        );
    }
    if limits.timeout.is_zero() {
        bail!("timeout must be more than zero");
    }
    if limits.concurrency == 0 {
        bail!("concurrency must be at least 1");
    }
    Ok(limits)
}

/// A token hash as `hostel token` prints it: 64 hex digits.
fn parse_token_hash(hex: &str) -> Result<TokenHash> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        bail!("expected the SHA-256 of a token as 64 hex digits (`hostel token` makes one)");
    }
    let mut hash = [0; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).expect("hex digits are ASCII");
        hash[i] = u8::from_str_radix(text, 16).expect("checked hex digits");
    }
    Ok(hash)
}

pub(crate) fn check_name(name: &str, key: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!("key `{key}`: names may only use letters, digits, '-' and '_'");
    }
    Ok(())
}

/// Every entry of a list parsed by `parse`; an error names the key and the entry.
fn each<T>(entries: &[String], key: &str, parse: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    entries
        .iter()
        .map(|entry| {
            parse(entry).with_context(|| {
                format!(
                    "key `{key}`: entry {:?}",
                    crate::secrets::redact_text(entry)
                )
            })
        })
        .collect()
}

/// A host name as routing compares it (see [`routes::normalize_host`]).
fn host_name(text: &str) -> Result<String> {
    routes::normalize_host(text).context("not a host name")
}

/// The routes of every tenant's apps, checked against each other by the ownership rule
/// ([`routes::conflict`]).
fn check_routes(tenants: &[Tenant]) -> Result<()> {
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

fn default_cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("hostel"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("no HOME or XDG_CACHE_HOME set: set `server.code_cache` in the config")?;
    Ok(PathBuf::from(home).join(".cache").join("hostel"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/nonexistent/hostel.toml"))
    }

    #[test]
    fn empty_config_serves_one_default_tenant_on_loopback() {
        let config = parse("").unwrap();
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.tenants.len(), 1);
        assert_eq!(config.tenants[0].name, DEFAULT_TENANT);
        assert_eq!(config.tenants[0].limits.memory, DEFAULT_MEMORY);
        assert_eq!(config.memory_keep_resident, 4 << 20);
        let tuned = parse("[server]\nmemory_keep_resident = \"0\"\n").unwrap();
        assert_eq!(tuned.memory_keep_resident, 0);
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("/nonexistent/hostel.toml"), "{msg}");
        assert!(msg.contains("lisen"), "{msg}");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn limits_layer_tenant_over_defaults_over_builtin() {
        let config = parse(
            "[defaults.limits]\nmemory = \"32MiB\"\ntimeout = \"2s\"\n\
             [tenants.a.limits]\ntimeout = \"500ms\"\n[tenants.b]\n",
        )
        .unwrap();
        let a = &config.tenants[0].limits;
        let b = &config.tenants[1].limits;
        assert_eq!(a.memory, 32 << 20);
        assert_eq!(a.timeout, Duration::from_millis(500));
        assert_eq!(b.timeout, Duration::from_secs(2));
        assert_eq!(b.concurrency, DEFAULT_CONCURRENCY);
    }

    #[test]
    fn missing_component_names_the_key() {
        let err = parse("[apps.hello]\nroute = \"/\"\ncomponent = \"nope.wasm\"\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("apps.hello.component"), "{msg}");
        assert!(msg.contains("nope.wasm"), "{msg}");
    }

    #[test]
    fn granted_stores_must_be_declared() {
        let err = parse("[grants]\nstores = [\"cache\"]\n").unwrap_err();
        assert!(format!("{err:#}").contains("[stores.cache]"), "{err:#}");
        let config =
            parse("[stores.cache]\nkind = \"embedded\"\npath = \"kv.redb\"\n[grants]\nstores = [\"cache\"]\n")
                .unwrap();
        assert_eq!(
            config.stores["cache"],
            StoreConfig::Embedded("/nonexistent/kv.redb".into())
        );
        assert_eq!(config.tenants[0].stores, ["cache"]);
        let err = parse("[stores.x]\nkind = \"memcached\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("memcached"), "{err:#}");
    }

    #[test]
    fn pools_take_defaults_and_check_their_url() {
        let config = parse(
            "[pools.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n\
             [pools.db]\nkind = \"postgres\"\nurl = \"postgres://app:pw@127.0.0.1/app\"\n\
             max_connections = 4\nacquire_timeout = \"250ms\"\nconnect = \"lazy\"\n\
             [grants]\npools = [\"cache\", \"db\"]\n",
        )
        .unwrap();
        let cache = &config.pools["cache"];
        assert_eq!(
            *cache,
            PoolConfig::redis(Secret::new("redis://127.0.0.1:6379".into()), None)
        );
        let db = &config.pools["db"];
        assert_eq!(db.max_connections, 4);
        assert_eq!(db.acquire_timeout, Duration::from_millis(250));
        assert_eq!(db.connect, Connect::Lazy);
        assert_eq!(db.address(), "postgres://app@127.0.0.1/app");
        assert_eq!(config.tenants[0].pools, ["cache", "db"]);

        let err = parse("[pools.db]\nkind = \"postgres\"\nurl = \"redis://x\"\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("[pools.db]") && msg.contains("postgres://"),
            "{msg}"
        );
        let err = parse("[grants]\npools = [\"nope\"]\n").unwrap_err();
        assert!(format!("{err:#}").contains("[pools.nope]"), "{err:#}");
        let err = parse("[pools.x]\nkind = \"redis\"\nurl = \"redis://x\"\nmax_connections = 0\n")
            .unwrap_err();
        assert!(format!("{err:#}").contains("max_connections"), "{err:#}");
    }

    #[test]
    fn hosts_belong_to_one_tenant_and_routes_do_not_cross_tenants() {
        let two_owners = parse(
            "[tenants.a]\nhosts = [\"shop.test\"]\n[tenants.b]\nhosts = [\"Shop.test:80\"]\n",
        )
        .unwrap_err();
        assert!(
            format!("{two_owners:#}").contains("shared_hosts"),
            "{two_owners:#}"
        );
        let bad_host = parse("[tenants.a]\nhosts = [\"a b\"]\n").unwrap_err();
        assert!(
            format!("{bad_host:#}").contains("tenants.a.hosts"),
            "{bad_host:#}"
        );
    }
}
