//! A tenant as the running host holds it: who it is, its quotas, and its state of every
//! capability, shared by all its apps.

use crate::capabilities::shape::TenantInfo;
use crate::capabilities::{AppCapabilities, TenantCapabilities};
use crate::config::{TenantConfig, TokenHash};
use crate::fair_share::CpuShare;
use crate::limits::Limits;
use crate::metrics::Metrics;
use anyhow::Result;
use std::sync::Arc;
use tokio::sync::Semaphore;

pub struct Tenant {
    pub name: String,
    /// Host names it serves (empty: any host).
    pub hosts: Vec<String>,
    /// SHA-256 of its admin token, if it has one.
    pub admin_token: Option<TokenHash>,
    pub limits: Limits,
    /// One permit per request in flight; requests that find none get 429.
    pub admission: Arc<Semaphore>,
    /// This tenant's share of the CPU (see `fair_share`).
    pub cpu: CpuShare,
    /// What its guests may reach: its grants, namespace and clients, per capability.
    pub capabilities: TenantCapabilities,
}

impl Tenant {
    /// `cpu_slots`: see [`crate::fair_share::cpu_slots`].
    pub fn new(
        config: &TenantConfig,
        capabilities: &AppCapabilities,
        cpu_slots: usize,
        metrics: &Arc<Metrics>,
    ) -> Result<Arc<Tenant>> {
        let namespace: Arc<str> = format!("tenant:{}", config.name).into();
        let info = TenantInfo {
            name: &config.name,
            metrics,
            namespace: &namespace,
            limits: &config.limits,
        };
        Ok(Arc::new(Tenant {
            name: config.name.clone(),
            hosts: config.hosts.clone(),
            admin_token: config.admin_token,
            limits: config.limits,
            admission: Arc::new(Semaphore::new(config.limits.concurrency as usize)),
            cpu: CpuShare::new(cpu_slots),
            capabilities: TenantCapabilities::new(capabilities, &info, &config.grants)?,
        }))
    }
}
