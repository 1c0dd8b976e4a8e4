//! Per-request quotas: the `limits` sections of the config (`[defaults.limits]`, a tenant's
//! `limits`) and the limits they resolve to, layered tenant → defaults → built-in defaults.
//! Enforced by admission (`request`), the request body (`body`), the sandbox and the
//! capabilities that lend memory-sized things (outbound calls, result sizes).

use crate::units::{ByteSize, HumanDuration};
use anyhow::{Result, bail};
use serde::Deserialize;
use std::time::Duration;

/// The section as written; every key optional so tenants override only what they name.
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
    /// Apps the tenant may have at once (from the config and deployed): a deploy of one more
    /// gets 403. Each app costs the host its compiled code and its series and usage.
    pub apps: Option<u32>,
}

/// Built-in defaults, used where neither the tenant nor `[defaults.limits]` says otherwise.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONCURRENCY: u32 = 256;
pub const DEFAULT_REQUEST_BODY: u64 = 16 << 20;
pub const DEFAULT_RESPONSE_BODY: u64 = 1 << 30;
pub const DEFAULT_OUTBOUND_CALLS: u32 = 100;
pub const DEFAULT_APPS: u32 = 64;

/// Effective limits of one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory: u64,
    pub timeout: Duration,
    pub concurrency: u32,
    pub request_body: u64,
    pub response_body: u64,
    pub outbound_calls: u32,
    pub apps: u32,
}

impl LimitsSection {
    /// This tenant's limits over `defaults` over the built-in ones.
    pub fn resolve(&self, defaults: &LimitsSection) -> Result<Limits> {
        let limits = Limits {
            memory: self
                .memory
                .or(defaults.memory)
                .map_or(DEFAULT_MEMORY, |b| b.0),
            timeout: self
                .timeout
                .or(defaults.timeout)
                .map_or(DEFAULT_TIMEOUT, |d| d.0),
            concurrency: self
                .concurrency
                .or(defaults.concurrency)
                .unwrap_or(DEFAULT_CONCURRENCY),
            request_body: self
                .request_body
                .or(defaults.request_body)
                .map_or(DEFAULT_REQUEST_BODY, |b| b.0),
            response_body: self
                .response_body
                .or(defaults.response_body)
                .map_or(DEFAULT_RESPONSE_BODY, |b| b.0),
            outbound_calls: self
                .outbound_calls
                .or(defaults.outbound_calls)
                .unwrap_or(DEFAULT_OUTBOUND_CALLS),
            apps: self.apps.or(defaults.apps).unwrap_or(DEFAULT_APPS),
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
}
