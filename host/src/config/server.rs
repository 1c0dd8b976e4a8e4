//! The host's own sections: `[server]` (the listener, the code cache, sandbox sizing, shutdown
//! and drain, the access log), `[defaults]` (limits every tenant starts from) and `[admin]`
//! (the admin API, and the health probes beside it).

use crate::limits::LimitsSection;
use crate::units::{ByteSize, HumanDuration};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Folder for compiled code; defaults to the user's cache folder (`$XDG_CACHE_HOME/hostel`
    /// or `~/.cache/hostel` on Linux).
    pub code_cache: Option<PathBuf>,
    /// How long in-flight requests may run on after SIGINT/SIGTERM.
    #[serde(default = "default_grace")]
    pub shutdown_grace: HumanDuration,
    /// How long after SIGINT/SIGTERM the app listener keeps accepting while `/readyz` already
    /// answers 503: a load balancer that probes every few seconds stops sending traffic before
    /// connections are refused. The drain (`shutdown_grace`) starts after it.
    #[serde(default = "default_drain_delay")]
    pub drain_delay: HumanDuration,
    /// One INFO line per request, with target `hostel::access`.
    #[serde(default)]
    pub access_log: bool,
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
            drain_delay: default_drain_delay(),
            access_log: false,
            max_instances: default_max_instances(),
            memory_keep_resident: default_keep_resident(),
            shared_hosts: Vec::new(),
        }
    }
}

pub fn default_listen() -> SocketAddr {
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
fn default_drain_delay() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}
fn default_keep_resident() -> ByteSize {
    ByteSize(4 << 20)
}
fn default_max_instances() -> u32 {
    1000
}

impl ServerSection {
    /// The code cache folder: the configured one (relative to `base`), else the user's.
    pub fn code_cache(&self, base: &Path) -> Result<PathBuf> {
        match &self.code_cache {
            Some(dir) => Ok(base.join(dir)),
            None => Ok(dirs::cache_dir()
                .context("no cache folder for this user (no HOME): set `server.code_cache`")?
                .join("hostel")),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSection {
    #[serde(default)]
    pub limits: LimitsSection,
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

/// Where Prometheus scrapes the host's metrics (`GET /metrics`): the admin listener always,
/// and a listener of its own when `listen` is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: Option<SocketAddr>,
    /// Whether a scrape needs no token. Off: it needs the operator's admin token (metrics
    /// name every tenant and app).
    #[serde(default)]
    pub open: bool,
    /// Off: requests are not counted — no per-request series, no usage.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

#[derive(Debug, Clone, Copy)]
pub struct MetricsConfig {
    pub listen: Option<SocketAddr>,
    pub open: bool,
    pub enabled: bool,
}

impl MetricsSection {
    /// `admin`: whether there is an `[admin]` section, whose operator token a scrape can use.
    pub fn resolve(self, admin: bool) -> Result<MetricsConfig> {
        if self.listen.is_some() && !self.open && !admin {
            bail!(
                "key `metrics.listen`: a scrape needs the operator's admin token, and there is no                  [admin] section to hold it: add one, or set `metrics.open = true` to serve                  metrics to anyone who can reach the listener"
            );
        }
        Ok(MetricsConfig {
            listen: self.listen,
            open: self.open,
            enabled: self.enabled,
        })
    }
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            listen: None,
            open: false,
            enabled: true,
        }
    }
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

impl AdminSection {
    pub fn resolve(self, base: &Path) -> Result<AdminConfig> {
        Ok(AdminConfig {
            listen: self.listen,
            operator_token: parse_token_hash(&self.operator_token_sha256)
                .context("key `admin.operator_token_sha256`")?,
            state: base.join(self.state),
        })
    }
}

/// A token hash as `hostel token` prints it: 64 hex digits.
pub fn parse_token_hash(text: &str) -> Result<TokenHash> {
    let mut hash = [0; 32];
    if hex::decode_to_slice(text, &mut hash).is_err() {
        bail!("expected the SHA-256 of a token as 64 hex digits (`hostel token` makes one)");
    }
    Ok(hash)
}
