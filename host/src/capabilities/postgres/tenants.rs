//! PostgreSQL isolation between tenants on one server, enforced by PostgreSQL itself: every
//! tenant granted a pool with an `admin_url` logs in as a role of its own into a database of
//! its own, and holds no other privilege.
//!
//! Per tenant `T` (names: `hostel_T`, shortened with a hash past PostgreSQL's 63 bytes):
//! - a login role, `NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`, a member
//!   of no role, so `SET ROLE`, `SET SESSION AUTHORIZATION`, `CREATE ROLE`, `ALTER ROLE` of
//!   others, `COPY ... PROGRAM`, `pg_read_file`, untrusted extensions (`dblink`) are refused by
//!   the server;
//! - a database owned by that role, made from `template0`, whose `CONNECT` and `TEMPORARY`
//!   are revoked from `PUBLIC`: another tenant's role cannot even connect to it, and no query
//!   reaches across databases.
//!
//! The host provisions both through the admin login (CREATEROLE and CREATEDB suffice) before
//! a tenant's first connection, idempotently: what exists is brought back to these settings.
//! The role's password is derived from the admin login's password (HMAC-SHA-256 over the role
//! name), so every host sharing the config derives the same one, and it is set anew at each
//! provisioning — also after a login failure, so a tenant that changed its own password
//! (which PostgreSQL lets a role do) gets it back. Only its SCRAM verifier crosses the wire.

use super::server::{self, Server};
use anyhow::{Context, Result, anyhow};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, SimpleQueryMessage};

/// Prefix of every tenant's role and database name.
const PREFIX: &str = "hostel_";
/// PostgreSQL truncates identifiers past this many bytes.
const MAX_IDENTIFIER: usize = 63;

/// The role (and database) name of `tenant`.
pub fn role_name(tenant: &str) -> String {
    let name = format!("{PREFIX}{tenant}");
    if name.len() <= MAX_IDENTIFIER {
        return name;
    }
    // Distinct tenants must not collide after truncation: keep a prefix and add a hash.
    let digest = Sha256::digest(tenant.as_bytes());
    let hash = hex::encode(&digest[..8]);
    let keep = MAX_IDENTIFIER - PREFIX.len() - 1 - hash.len();
    let mut cut = keep;
    while !tenant.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{PREFIX}{}_{hash}", &tenant[..cut])
}

/// How tenants' logins are made and checked, for one server.
pub struct Provisioner {
    admin: Server,
    /// Key of the password derivation: the admin password, else random per process.
    key: Vec<u8>,
}

impl Provisioner {
    pub fn new(admin: Server) -> Result<Provisioner> {
        let key = match admin.login.get_password() {
            Some(password) if !password.is_empty() => password.to_vec(),
            _ => {
                let mut key = vec![0; 32];
                getrandom::fill(&mut key).map_err(|e| anyhow!("no random numbers: {e}"))?;
                key
            }
        };
        Ok(Provisioner { admin, key })
    }

    /// Where and as whom `tenant`'s sessions log in.
    pub fn tenant_login(&self, tenant: &str) -> Server {
        let role = role_name(tenant);
        let mut login = self.admin.login.clone();
        login
            .user(role.clone())
            .password(self.password(&role))
            .dbname(role);
        Server {
            login,
            tls: self.admin.tls.clone(),
        }
    }

    fn password(&self, role: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(b"hostel postgres tenant login\0");
        mac.update(role.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Creates or repairs `tenant`'s role and database.
    pub async fn provision(&self, tenant: &str) -> Result<()> {
        let role = role_name(tenant);
        let admin = self.connect().await?;
        let ident = quote_identifier(&role);
        let verifier = postgres_protocol::password::scram_sha_256(self.password(&role).as_bytes());
        // What a CREATEROLE login may set. SUPERUSER, REPLICATION and BYPASSRLS are off for a
        // new role; on an existing one, only a superuser can take them away.
        let attributes = "LOGIN NOCREATEDB NOCREATEROLE INHERIT";
        let rows = admin
            .simple_query(&format!(
                "SELECT rolsuper OR rolreplication OR rolbypassrls FROM pg_catalog.pg_roles \
                 WHERE rolname = {}",
                quote_literal(&role)
            ))
            .await?;
        let existing = rows.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0) == Some("t")),
            _ => None,
        });
        match existing {
            None => {
                let created = admin
                    .batch_execute(&format!(
                        "CREATE ROLE {ident} {attributes} PASSWORD {}",
                        quote_literal(&verifier)
                    ))
                    .await;
                // Another host may have created it just now.
                if let Err(e) = created
                    && e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT)
                    && e.code() != Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
                {
                    return Err(e).context(format!("cannot create role {role}"));
                }
            }
            Some(true) => admin
                .batch_execute(&format!(
                    "ALTER ROLE {ident} NOSUPERUSER NOREPLICATION NOBYPASSRLS"
                ))
                .await
                .with_context(|| {
                    format!(
                        "role {role} has SUPERUSER, REPLICATION or BYPASSRLS, which only a \
                         superuser can take away: remove them, and the host serves the tenant"
                    )
                })?,
            Some(false) => {}
        }
        admin
            .batch_execute(&format!(
                "ALTER ROLE {ident} WITH {attributes} PASSWORD {}",
                quote_literal(&verifier)
            ))
            .await
            .with_context(|| format!("cannot set the attributes and password of role {role}"))?;
        // Membership lets a non-superuser admin create a database owned by the role
        // (PostgreSQL < 16 does not grant it to the role's creator).
        admin
            .batch_execute(&format!("GRANT {ident} TO CURRENT_USER"))
            .await
            .with_context(|| format!("cannot make the admin login a member of role {role}"))?;
        let exists = |rows: Vec<SimpleQueryMessage>| {
            rows.iter().any(|m| matches!(m, SimpleQueryMessage::Row(_)))
        };
        let database_exists = exists(
            admin
                .simple_query(&format!(
                    "SELECT 1 FROM pg_catalog.pg_database WHERE datname = {}",
                    quote_literal(&role)
                ))
                .await?,
        );
        if !database_exists {
            let created = admin
                .batch_execute(&format!(
                    "CREATE DATABASE {ident} OWNER {ident} TEMPLATE template0 ENCODING 'UTF8'"
                ))
                .await;
            if let Err(e) = created
                && e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                && e.code() != Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            {
                return Err(e).context(format!("cannot create database {role}"));
            }
        }
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {ident} OWNER TO {ident}; \
                 REVOKE ALL ON DATABASE {ident} FROM PUBLIC; \
                 GRANT CONNECT, TEMPORARY ON DATABASE {ident} TO {ident}"
            ))
            .await
            .with_context(|| format!("cannot restrict database {role} to its tenant"))?;
        tracing::info!(tenant, role, "PostgreSQL login role and database ready");
        Ok(())
    }

    /// A connection on the admin login, for provisioning only (not pooled: it is rare).
    async fn connect(&self) -> Result<Client> {
        let (client, connection) = self
            .admin
            .login
            .connect(self.admin.tls.clone())
            .await
            .map_err(|e| anyhow!("{}", server::explain(&e)))
            .context("cannot log in with the pool's admin_url")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("provisioning connection ended: {e}");
            }
        });
        Ok(client)
    }
}

/// `"name"`, with inner quotes doubled.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with inner quotes doubled (standard_conforming_strings, PostgreSQL's default).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_stay_distinct_within_postgresqls_identifier_length() {
        assert_eq!(role_name("acme"), "hostel_acme");
        let long_a = "a".repeat(80);
        let long_b = format!("{}b", "a".repeat(79));
        let (a, b) = (role_name(&long_a), role_name(&long_b));
        assert!(a.len() <= MAX_IDENTIFIER && b.len() <= MAX_IDENTIFIER);
        assert_ne!(a, b);
        assert_eq!(quote_identifier("x\"y"), "\"x\"\"y\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
