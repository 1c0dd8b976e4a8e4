//! The TOML configuration: what the operator writes, checked once at startup.
//!
//! This module only assembles the file from its sections, each read and checked where it is
//! used: `[server]`, `[defaults]` and `[admin]` ([`server`]), tenants and their apps
//! ([`tenants`]), `[pools]` ([`crate::capabilities::servers`]) and every capability's own
//! sections and grants ([`crate::capabilities`]). Parsing is strict — an unknown key is an
//! error naming its line, not a silently ignored key — and everything a request needs later is
//! resolved here: relative paths against the config file's folder, limits layered tenant →
//! `[defaults.limits]` → built-in defaults.

mod cluster;
#[cfg(test)]
mod fuzz;
mod server;
mod tenants;

pub use cluster::ClusterConfig;
pub use server::{AdminConfig, MetricsConfig, TokenHash};
pub use tenants::{AppConfig, DEFAULT_TENANT, TenantConfig};

use crate::capabilities::servers::{self, PoolConfig, PoolSection};
use crate::capabilities::shape::ConfigFile;
use crate::capabilities::{self, CapabilityConfig};
use crate::sections::Table;
use anyhow::{Context, Result, bail};
use server::{AdminSection, DefaultsSection, MetricsSection, ServerSection};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The host's own top-level tables; the capabilities own the others they name.
const HOST_SECTIONS: &[&str] = &[
    "server", "defaults", "admin", "metrics", "cluster", "pools", "apps", "grants", "tenants",
];

/// The configuration after validation: paths absolute, limits resolved, nothing left to check.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub code_cache: PathBuf,
    pub shutdown_grace: Duration,
    /// After SIGINT/SIGTERM: not ready at once, still accepting for this long, then draining.
    pub drain_delay: Duration,
    /// One INFO line per request (`hostel::access`).
    pub access_log: bool,
    pub max_instances: u32,
    pub memory_keep_resident: u64,
    pub tenants: Vec<TenantConfig>,
    /// Redis and PostgreSQL pools by name.
    pub pools: BTreeMap<String, PoolConfig>,
    /// Every capability's own config (key-value stores, ...).
    pub capabilities: CapabilityConfig,
    pub admin: Option<AdminConfig>,
    pub metrics: MetricsConfig,
    /// `[cluster]`: the deployed set, usage and progress live in NATS JetStream.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Reads, parses and validates a config file. Every error names the file, the key and why.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        Self::assemble(text, path).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))
    }

    fn assemble(text: &str, path: &Path) -> Result<Config> {
        let root = Table::parse(text)?;
        let known: Vec<&str> = HOST_SECTIONS
            .iter()
            .chain(capabilities::SECTIONS.concat().iter())
            .copied()
            .collect();
        root.deny_unknown(&known)?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let server: ServerSection = root.get_or_default("server")?;
        let defaults: DefaultsSection = root.get_or_default("defaults")?;
        let pools = servers::parse_pools(
            root.get_or_default::<BTreeMap<String, PoolSection>>("pools")?,
            &base,
        )?;
        let file = ConfigFile {
            root: &root,
            base: &base,
            pools: &pools,
        };
        let capabilities = CapabilityConfig::new(&file)?;
        let shared_hosts = server
            .shared_hosts
            .iter()
            .map(|host| {
                tenants::host_name(host)
                    .with_context(|| format!("key `server.shared_hosts`: entry {host:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let tenants = tenants::resolve(&file, &defaults.limits, &capabilities, &shared_hosts)?;
        if server.max_instances == 0 {
            bail!("key `server.max_instances`: must be at least 1");
        }
        let admin = root
            .get::<AdminSection>("admin")?
            .map(|admin| admin.resolve(&base))
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
        let metrics = root
            .get_or_default::<MetricsSection>("metrics")?
            .resolve(admin.is_some())?;
        let cluster = root
            .get::<cluster::ClusterSection>("cluster")?
            .map(|cluster| cluster.resolve(&base))
            .transpose()?;
        if cluster.is_some() && admin.is_none() {
            bail!(
                "key `cluster`: cluster mode needs an [admin] section — deploys reach the \
                 cluster through it, and load balancers probe its /readyz"
            );
        }
        Ok(Config {
            cluster,
            metrics,
            source: path.to_path_buf(),
            listen: server.listen,
            code_cache: server.code_cache(&base)?,
            shutdown_grace: server.shutdown_grace.0,
            drain_delay: server.drain_delay.0,
            access_log: server.access_log,
            max_instances: server.max_instances,
            memory_keep_resident: server.memory_keep_resident.0,
            tenants,
            pools,
            capabilities,
            admin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::keyvalue::StoreConfig;
    use crate::capabilities::servers::Connect;
    use crate::limits::{DEFAULT_CONCURRENCY, DEFAULT_MEMORY};
    use crate::secrets::Secret;
    use server::default_listen;

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
    fn cluster_mode_takes_nats_urls_and_says_which_key_is_wrong() {
        const ADMIN: &str = "[admin]\noperator_token_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
        let config = parse(&format!(
            "{ADMIN}[cluster]\nurl = \"nats://127.0.0.1:4222, nats://127.0.0.1:4223\"\nreplicas = 3\n"
        ))
        .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.replicas, 3);
        assert_eq!(cluster.deployments, "hostel-deployments");
        assert_eq!(cluster.components, "hostel-components");
        assert_eq!(cluster.usage, "hostel-usage");
        assert!(parse("").unwrap().cluster.is_none());
        for (text, key, why) in [
            ("[cluster]\nurl = \"nats://h:4222\"\n", "cluster", "[admin]"),
            (
                &format!("{ADMIN}[cluster]\nurl = \"redis://h:4222\"\n") as &str,
                "cluster.url",
                "nats://",
            ),
            (
                &format!("{ADMIN}[cluster]\nurl = \"nats://h:1,http://h:2\"\n"),
                "cluster.url",
                "nats://",
            ),
            (
                &format!("{ADMIN}[cluster]\nurl = \"nats://h\"\nreplicas = 0\n"),
                "cluster.replicas",
                "1 to 5",
            ),
            (
                &format!("{ADMIN}[cluster]\nurl = \"nats://h\"\nusage = \"a.b\"\n"),
                "cluster.usage",
                "letters, digits",
            ),
            (
                &format!("{ADMIN}[cluster]\nurl = \"nats://h\"\nbucket = \"x\"\n"),
                "bucket",
                "unknown field",
            ),
            (
                &format!("{ADMIN}[cluster]\nurl = \"nats://h\"\ncreds_file = \"none.creds\"\n"),
                "cluster.creds_file",
                "cannot read",
            ),
            (
                &format!("{ADMIN}[cluster]\nreplicas = 3\n"),
                "url",
                "missing field",
            ),
        ] {
            let msg = format!("{:#}", parse(text).unwrap_err());
            assert!(msg.contains("/nonexistent/hostel.toml"), "{msg}");
            assert!(msg.contains(key) && msg.contains(why), "{text}: {msg}");
        }
        // Passwords in the URL stay out of errors.
        let msg = format!(
            "{:#}",
            parse(&format!("{ADMIN}[cluster]\nurl = \"natz://u:hunter2@h\"\n")).unwrap_err()
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn metrics_are_on_need_a_token_and_say_which_key_is_wrong() {
        let config = parse("").unwrap();
        assert!(config.metrics.enabled && !config.metrics.open);
        assert_eq!(config.metrics.listen, None);
        let off = parse("[metrics]\nenabled = false\n").unwrap();
        assert!(!off.metrics.enabled);
        let open = parse("[metrics]\nlisten = \"127.0.0.1:9100\"\nopen = true\n").unwrap();
        assert_eq!(open.metrics.listen, Some("127.0.0.1:9100".parse().unwrap()));
        let error = format!("{:#}", parse("[metrics]\nport = 9100\n").unwrap_err());
        assert!(error.contains("port"), "{error}");
        let error = format!(
            "{:#}",
            parse("[metrics]\nlisten = \"127.0.0.1:9100\"\n").unwrap_err()
        );
        assert!(
            error.contains("metrics.listen") && error.contains("[admin]"),
            "{error}"
        );
    }

    #[test]
    fn drain_delay_and_access_log_default_off_and_are_checked() {
        let config = parse("").unwrap();
        assert_eq!(config.drain_delay, Duration::ZERO);
        assert!(!config.access_log);
        let config =
            parse("[server]\ndrain_delay = \"5s\"\naccess_log = true\nshutdown_grace = 3\n")
                .unwrap();
        assert_eq!(config.drain_delay, Duration::from_secs(5));
        assert!(config.access_log);
        assert_eq!(config.shutdown_grace, Duration::from_secs(3));

        for (text, key, why) in [
            (
                "[server]\ndrain_delay = \"soon\"\n",
                "drain_delay",
                "invalid duration",
            ),
            (
                "[server]\ndrain_delay = -2\n",
                "drain_delay",
                "cannot be negative",
            ),
            ("[server]\naccess_log = \"yes\"\n", "access_log", "bool"),
            (
                "[server]\naccess_logs = true\n",
                "access_logs",
                "unknown field",
            ),
        ] {
            let msg = format!("{:#}", parse(text).unwrap_err());
            assert!(
                msg.contains("/nonexistent/hostel.toml") && msg.contains("line 2"),
                "{msg}"
            );
            assert!(msg.contains(key) && msg.contains(why), "{text}: {msg}");
        }
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
    fn unknown_sections_and_grants_are_named_with_their_line() {
        let err = parse("[server]\n[sever]\nlisten = 3\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("line 2") && msg.contains("unknown key `sever`"),
            "{msg}"
        );
        let err = parse("[tenants.a.grants]\nstores = []\npols = [\"x\"]\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("line 3") && msg.contains("`tenants.a.grants.pols`"),
            "{msg}"
        );
        assert!(
            msg.contains("outbound") && msg.contains("pools"),
            "lists the keys: {msg}"
        );
        let err = parse("[stores.\"a b\"]\nkind = \"embedded\"\npath = \"x\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("stores.a b"),
            "store names are checked: {err:#}"
        );
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
            config.capabilities.keyvalue["cache"],
            StoreConfig::Embedded("/nonexistent/kv.redb".into())
        );
        assert_eq!(config.tenants[0].grants.keyvalue, ["cache"]);
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
        assert_eq!(config.tenants[0].grants.redis, ["cache", "db"]);
        assert_eq!(config.tenants[0].grants.postgres, ["cache", "db"]);

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
