//! `[cluster]`: run as one of several identical hosts that share their deployed set, usage
//! and (with `kind = "nats"` stores) key-value data through NATS JetStream
//! ([`crate::cluster`]).

use crate::capabilities::nats::NatsSection;
use crate::capabilities::servers::{Connect, PoolConfig};
use crate::names;
use crate::secrets::Secret;
use anyhow::{Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    // The connection, as in [`NatsSection`] (serde's `flatten` would not reject unknown keys).
    url: Secret<String>,
    creds_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    connect: Option<Connect>,
    /// The KV bucket holding the deployed set's manifest and each host's progress.
    #[serde(default = "default_deployments")]
    deployments: String,
    /// The object store holding deployed components, named by their SHA-256.
    #[serde(default = "default_components")]
    components: String,
    /// The KV bucket holding usage by hour and tenant.
    #[serde(default = "default_usage")]
    usage: String,
    /// Replicas of the buckets Hostel creates (3 on a 3-node NATS cluster); buckets that
    /// exist are used as they are.
    #[serde(default = "default_replicas")]
    replicas: usize,
    /// This host's name in the cluster's progress reports; the machine's host name and the
    /// process id by default.
    host_id: Option<String>,
}

/// `[cluster]`, checked.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub nats: PoolConfig,
    pub deployments: String,
    pub components: String,
    pub usage: String,
    pub replicas: usize,
    pub host_id: Option<String>,
}

fn default_deployments() -> String {
    "hostel-deployments".into()
}
fn default_components() -> String {
    "hostel-components".into()
}
fn default_usage() -> String {
    "hostel-usage".into()
}
fn default_replicas() -> usize {
    1
}

impl ClusterSection {
    pub fn resolve(self, base: &Path) -> Result<ClusterConfig> {
        for (key, bucket) in [
            ("deployments", &self.deployments),
            ("components", &self.components),
            ("usage", &self.usage),
        ] {
            names::check(bucket, &format!("cluster.{key}"))?;
        }
        if self.deployments == self.usage {
            bail!("keys `cluster.deployments` and `cluster.usage`: name two different buckets");
        }
        if !(1..=5).contains(&self.replicas) {
            bail!(
                "key `cluster.replicas`: JetStream keeps 1 to 5 replicas, not {}",
                self.replicas
            );
        }
        if let Some(id) = &self.host_id {
            names::check(id, "cluster.host_id")?;
        }
        Ok(ClusterConfig {
            nats: NatsSection {
                url: self.url,
                creds_file: self.creds_file,
                ca_file: self.ca_file,
                connect: self.connect,
            }
            .resolve("cluster", base)?,
            deployments: self.deployments,
            components: self.components,
            usage: self.usage,
            replicas: self.replicas,
            host_id: self.host_id,
        })
    }
}
