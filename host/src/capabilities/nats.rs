//! NATS with JetStream: the server behind `kind = "nats"` key-value stores and behind cluster
//! mode ([`crate::cluster`]). One client per distinct settings (a store and `[cluster]` that
//! name the same servers share it, through [`Servers::shared`]); it reconnects by itself, and
//! while it is disconnected every call fails at once with an `unavailable` error instead of
//! waiting for a timeout.
//!
//! The settings (`url`, `creds_file`, `ca_file`, `connect`) are written the same way in
//! `[cluster]` and in `[stores.NAME]`: [`NatsSection`].

use super::servers::{Connect, PoolConfig, PoolKind, ServerPool, Servers, check_url_scheme};
use crate::metrics::{Metrics, PoolMeter};
use crate::secrets::{Secret, redact_url};
use crate::tls::{self, CaFile, Verify};
use anyhow::{Context, Result, anyhow, bail};
use async_nats::jetstream;
use async_nats::jetstream::response::Response;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a JetStream call (a write's acknowledgement, a read) may take before it fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How a NATS connection is written in the config (flattened into its section).
#[derive(Debug, Deserialize)]
pub struct NatsSection {
    /// `nats://[user:password@]host:port`, or several separated by commas (`tls://` for
    /// TLS): the servers to try first; the client learns the rest of the cluster from them.
    pub url: Secret<String>,
    /// A NATS credentials file (JWT and NKey seed), relative to the config file.
    pub creds_file: Option<PathBuf>,
    /// A PEM file of the CA that signs the servers' certificates (implies TLS).
    pub ca_file: Option<PathBuf>,
    /// When to connect: `eager` (default), `lazy` or `required`, as for pools.
    pub connect: Option<Connect>,
}

impl NatsSection {
    /// Validates the settings of section `section` (`cluster`, `stores.NAME`); paths are
    /// relative to `base`.
    pub fn resolve(self, section: &str, base: &Path) -> Result<PoolConfig> {
        let urls: Vec<&str> = self.url.expose().split(',').map(str::trim).collect();
        for url in &urls {
            check_url_scheme(PoolKind::Nats, url, &format!("{section}.url"))?;
            let parsed = url::Url::parse(url)
                .with_context(|| format!("key `{section}.url`: {:?}", redact_url(url)))?;
            if parsed.host_str().is_none_or(str::is_empty) {
                bail!("key `{section}.url`: {:?} names no host", redact_url(url));
            }
        }
        let ca = self
            .ca_file
            .map(|path| CaFile::read(&base.join(path)))
            .transpose()
            .with_context(|| format!("key `{section}.ca_file`"))?;
        let credentials = self
            .creds_file
            .map(|path| {
                let path = base.join(path);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if !text.contains("-----BEGIN NATS USER JWT-----") {
                    bail!(
                        "{} is not a NATS credentials file (no `-----BEGIN NATS USER JWT-----`)",
                        path.display()
                    );
                }
                Ok(Secret::new(text))
            })
            .transpose()
            .with_context(|| format!("key `{section}.creds_file`"))?;
        let mut config = PoolConfig::redis(self.url, ca);
        config.kind = PoolKind::Nats;
        config.credentials = credentials;
        config.connect = self.connect.unwrap_or_default();
        config.acquire_timeout = CALL_TIMEOUT;
        Ok(config)
    }
}

/// A NATS client and its JetStream context, connected on first use.
pub struct NatsServer {
    name: String,
    config: PoolConfig,
    connection: OnceCell<(async_nats::Client, jetstream::Context)>,
    /// Set once the client's first attempt to connect (to every server in `url`) has failed.
    first_attempt_failed: Arc<AtomicBool>,
    closed: AtomicBool,
    meter: PoolMeter,
}

impl NatsServer {
    /// For [`Servers::shared`].
    pub fn new(name: &str, config: &PoolConfig, metrics: &Arc<Metrics>) -> Result<Arc<NatsServer>> {
        Ok(Arc::new(NatsServer {
            name: name.to_string(),
            config: config.clone(),
            connection: OnceCell::new(),
            first_attempt_failed: Arc::new(AtomicBool::new(false)),
            closed: AtomicBool::new(false),
            meter: metrics.pool(name),
        }))
    }

    /// The shared client for these settings, made by the first caller.
    pub fn shared(
        servers: &mut Servers,
        name: &str,
        config: &PoolConfig,
    ) -> Result<Arc<NatsServer>> {
        servers.shared(name, config, NatsServer::new)
    }

    /// The servers, with any password left out.
    pub fn address(&self) -> String {
        self.config.address()
    }

    /// JetStream, once connected. Fails at once while the client is disconnected (it keeps
    /// reconnecting in the background), so that callers answer `unavailable` without waiting.
    pub async fn jetstream(&self) -> Result<&jetstream::Context> {
        if self.closed.load(Ordering::Relaxed) {
            bail!(
                "NATS {} is closed: the host is shutting down",
                self.address()
            );
        }
        let (client, jetstream) = self
            .connection
            .get_or_try_init(|| self.connect())
            .await
            .inspect_err(|_| self.meter.failed())?;
        // Never connected yet: wait for the first attempt (bounded), so that a call right
        // after startup, or a lazy client's first, is not refused for being early. Once that
        // attempt failed, calls fail at once like after a disconnection.
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        while client.connection_state() == async_nats::connection::State::Pending
            && !self.first_attempt_failed.load(Ordering::Relaxed)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if client.connection_state() != async_nats::connection::State::Connected {
            self.meter.failed();
            bail!(
                "unavailable: NATS {} ({:?}) is not connected; reconnecting in the background",
                self.address(),
                self.name
            );
        }
        Ok(jetstream)
    }

    /// Whether the client is connected now (false before the first connection).
    pub fn connected(&self) -> bool {
        self.connection.get().is_some_and(|(client, _)| {
            client.connection_state() == async_nats::connection::State::Connected
        })
    }

    async fn connect(&self) -> Result<(async_nats::Client, jetstream::Context)> {
        let _opening = self.meter.opening(false);
        let first_attempt_failed = self.first_attempt_failed.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("hostel {}", self.name))
            .connection_timeout(CALL_TIMEOUT)
            .request_timeout(Some(CALL_TIMEOUT))
            // Reconnect forever, from the first attempt on: a host outlives NATS outages.
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((100u64 << attempt.min(5)).min(2000))
            })
            // An attempt that reached no server is reported as a client error.
            .event_callback(move |event| {
                if let async_nats::Event::ClientError(_) = event {
                    first_attempt_failed.store(true, Ordering::Relaxed);
                }
                std::future::ready(())
            });
        let urls: Vec<async_nats::ServerAddr> = (self.config.url.expose().split(','))
            .map(|url| url.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("NATS url {}: {e}", self.address()))?;
        if let Some(ca) = &self.config.ca {
            options = options
                .require_tls(true)
                .tls_client_config(tls::client_config(Verify::ChainAndName, Some(ca))?);
        } else if urls.iter().any(|u| u.tls_required()) {
            options = options.tls_client_config(tls::client_config(Verify::ChainAndName, None)?);
        }
        if let Some(credentials) = &self.config.credentials {
            options = options
                .credentials(credentials.expose())
                .context("the NATS credentials file cannot be used")?;
        }
        let client = options
            .connect(urls)
            .await
            .map_err(|e| anyhow!("cannot connect to NATS {}: {e}", self.address()))?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(CALL_TIMEOUT);
        Ok((client, jetstream))
    }
}

impl ServerPool for NatsServer {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            let jetstream = match self.jetstream().await {
                Ok(jetstream) => jetstream,
                // Connecting happens in the background: give it the call timeout.
                Err(_) if !self.closed.load(Ordering::Relaxed) => {
                    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
                    loop {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if let Ok(jetstream) = self.jetstream().await {
                            break jetstream;
                        }
                        if tokio::time::Instant::now() > deadline {
                            return self.jetstream().await.map(drop);
                        }
                    }
                }
                Err(e) => return Err(e),
            };
            // The account's JetStream info, read as plain JSON: async-nats's `query_account`
            // wants fields that servers before 2.10 do not send (Debian's is 2.9).
            let no_jetstream = |e: &dyn std::fmt::Display| {
                anyhow!("NATS {} has no JetStream for us: {e}", self.address())
            };
            let info: Response<serde_json::Value> =
                (jetstream.request("INFO", &()).await).map_err(|e| no_jetstream(&e))?;
            match info {
                Response::Ok(_) => Ok(()),
                Response::Err { error } => Err(no_jetstream(&error)),
            }
        })
    }

    fn reap_idle(&self) {}

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        if let Some((client, _)) = self.connection.get() {
            let client = client.clone();
            tokio::spawn(async move {
                let _ = client.drain().await;
            });
        }
    }
}
