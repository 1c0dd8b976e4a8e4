//! Who is calling the admin API. Bearer tokens are random 256-bit strings; the config holds
//! only their SHA-256, so a leaked config file gives no access.

use crate::Host;
use crate::config::TokenHash;
use anyhow::Result;
use sha2::{Digest, Sha256};

/// Whom a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Manages every tenant.
    Operator,
    /// Manages only its own tenant's apps.
    Tenant(String),
}

impl Principal {
    pub fn may_manage(&self, tenant: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Tenant(own) => own == tenant,
        }
    }
}

/// The tokens the admin API accepts.
pub struct Tokens {
    operator: TokenHash,
    tenants: Vec<(TokenHash, String)>,
}

impl Tokens {
    pub fn new(operator: TokenHash, host: &Host) -> Tokens {
        let tenants = host
            .tenants()
            .filter_map(|t| t.admin_token.map(|hash| (hash, t.name.clone())))
            .collect();
        Tokens { operator, tenants }
    }

    /// The principal an `Authorization: Bearer TOKEN` header stands for, if any.
    pub fn identify(&self, authorization: Option<&str>) -> Option<Principal> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        if token.is_empty() {
            return None;
        }
        let hash: TokenHash = Sha256::digest(token.as_bytes()).into();
        if hash == self.operator {
            return Some(Principal::Operator);
        }
        self.tenants
            .iter()
            .find(|(known, _)| *known == hash)
            .map(|(_, tenant)| Principal::Tenant(tenant.clone()))
    }
}

/// A new random token and the SHA-256 (hex) that goes into the config.
pub fn new_token() -> Result<(String, String)> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        anyhow::anyhow!("the system has no random numbers to make a token from: {e}")
    })?;
    let token = hex::encode(bytes);
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    Ok((token, hash))
}
