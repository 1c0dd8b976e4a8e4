//! A PostgreSQL server as a pool URL names it: where it is, as whom to log in, and how its
//! TLS is checked.
//!
//! `sslmode` takes libpq's values — `disable`, `prefer` (the default), `require`, `verify-ca`,
//! `verify-full` — with libpq's meaning (see [`crate::tls`]); the pool's `ca_file` is the
//! trusted root (libpq's `sslrootcert`).

use crate::capabilities::servers::PoolConfig;
use crate::tls::{self, CaFile, Verify};
use anyhow::{Context, Result, bail};
use std::str::FromStr;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Shown in `pg_stat_activity` unless the URL names another `application_name`.
const APPLICATION_NAME: &str = "hostel";

/// How to reach and log in to one server.
#[derive(Clone)]
pub struct Server {
    pub login: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

impl Server {
    /// The server and login of a pool's `url` (or `admin_url`).
    pub fn from_pool(config: &PoolConfig) -> Result<Server> {
        let mut url = url::Url::parse(config.url.expose())
            .context("expected postgres://user[:password]@host[:port]/database[?sslmode=...]")?;
        let mut sslmode = "prefer".to_string();
        let mut kept = Vec::new();
        for (key, value) in url.query_pairs() {
            match &*key {
                "sslmode" => sslmode = value.into_owned(),
                "sslrootcert" => {
                    bail!("sslrootcert: name the CA file with the pool's `ca_file` key instead")
                }
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        let (mode, verify) = match (sslmode.as_str(), &config.ca) {
            ("disable", _) => (SslMode::Disable, Verify::Nothing),
            ("prefer", None) => (SslMode::Prefer, Verify::Nothing),
            ("require", None) => (SslMode::Require, Verify::Nothing),
            // As libpq does when a root certificate is given.
            ("prefer", Some(_)) => (SslMode::Prefer, Verify::Chain),
            ("require" | "verify-ca", _) => (SslMode::Require, Verify::Chain),
            ("verify-full", _) => (SslMode::Require, Verify::ChainAndName),
            (other, _) => {
                bail!("sslmode={other}: use disable, prefer, require, verify-ca or verify-full")
            }
        };
        let mut login = tokio_postgres::Config::from_str(url.as_str())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("not a PostgreSQL URL")?;
        login.ssl_mode(mode);
        if login.get_application_name().is_none() {
            login.application_name(APPLICATION_NAME);
        }
        if login.get_connect_timeout().is_none() {
            login.connect_timeout(config.acquire_timeout);
        }
        if login.get_user().is_none() {
            bail!("no user: give one, as in postgres://user@host/database");
        }
        Ok(Server {
            login,
            tls: connector(verify, config.ca.as_ref())?,
        })
    }

    /// Who and where, for telling two pools with the same login apart: hosts, ports, user and
    /// database.
    pub fn identity(&self) -> String {
        let user = self.login.get_user().unwrap_or_default();
        format!(
            "{}:{:?}/{} as {user}",
            self.hosts().join(","),
            self.login.get_ports(),
            self.login.get_dbname().unwrap_or(user)
        )
    }

    /// `postgres://user@host:port/database`, never a password: for log lines and errors.
    pub fn address(&self) -> String {
        let user = self.login.get_user().unwrap_or_default();
        format!(
            "postgres://{user}@{}:{}/{}",
            self.hosts().first().map_or("", String::as_str),
            self.login.get_ports().first().copied().unwrap_or(5432),
            self.login.get_dbname().unwrap_or(user)
        )
    }

    fn hosts(&self) -> Vec<String> {
        self.login
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect()
    }
}

fn connector(verify: Verify, ca: Option<&CaFile>) -> Result<MakeRustlsConnect> {
    Ok(MakeRustlsConnect::new(tls::client_config(verify, ca)?))
}

/// A connection error in words: the server's own message, the TLS failure inside it
/// explained, or the error with its causes.
pub fn explain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    tls::explain(e).unwrap_or_else(|| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        text
    })
}
