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

/// The oldest nats-server that keeps compare-and-set writes of a clustered stream
/// serialisable (nats-server#4320 fixed in 2.9.21, #5794 in 2.10.19).
const MIN_CLUSTERED_VERSION: [u64; 3] = [2, 10, 19];

/// How long a JetStream call (a write's acknowledgement, a read) may take before it fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write or read is retried while NATS does not answer: past a Raft election of a
/// stream's leader after its node was lost (NATS's election timeouts are 4–9 s).
pub const RETRY_BUDGET: Duration = Duration::from_secs(15);
/// How long after losing its server a call waits for the client to reconnect (to another
/// node of the cluster, usually within a few hundred milliseconds) before it fails: a lost
/// node is not seen by guests, a lost cluster is, this long after the loss and at once from
/// then on.
pub const RECONNECT_WAIT: Duration = Duration::from_secs(3);

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
    /// Counts the client's (re)connections: a follower of JetStream state re-reads it on a
    /// change, since what it missed while disconnected is not replayed to it otherwise.
    connections: tokio::sync::watch::Sender<u64>,
    /// When the client lost its server, while it has not reconnected.
    lost_at: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
    /// The connection (a count of `connections`) whose server version was found fit.
    version_checked: std::sync::atomic::AtomicU64,
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
            connections: tokio::sync::watch::Sender::new(0),
            lost_at: Arc::default(),
            version_checked: std::sync::atomic::AtomicU64::new(u64::MAX),
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
        if client.connection_state() != async_nats::connection::State::Connected
            && !self.reconnected(client).await
        {
            self.meter.failed();
            bail!(
                "unavailable: NATS {} ({:?}) is not connected; reconnecting in the background",
                self.address(),
                self.name
            );
        }
        self.check_version(client)?;
        Ok(jetstream)
    }

    /// Refuses a clustered server older than [`MIN_CLUSTERED_VERSION`], once per connection.
    fn check_version(&self, client: &async_nats::Client) -> Result<()> {
        let connection = *self.connections.borrow();
        if self.version_checked.load(Ordering::Relaxed) == connection {
            return Ok(());
        }
        let info = client.server_info();
        let version: Vec<u64> = (info.version.split(['.', '-']))
            .take(3)
            .map(|part| part.parse().unwrap_or(0))
            .collect();
        if info.cluster.is_some() && version.as_slice() < MIN_CLUSTERED_VERSION.as_slice() {
            bail!(
                "NATS {} runs nats-server {} in a cluster: before {}, clustered JetStream can \
                 accept two compare-and-set writes of one key (nats-server#4320, #5794), which \
                 would lose deploys and key-value writes; upgrade the NATS servers",
                self.address(),
                info.version,
                MIN_CLUSTERED_VERSION.map(|n| n.to_string()).join("."),
            );
        }
        self.version_checked.store(connection, Ordering::Relaxed);
        Ok(())
    }

    /// Runs the read `op` until it succeeds, retried (within [`RETRY_BUDGET`])
    /// while it fails for want of an answer — a node lost, a stream electing its leader —
    /// and not when it fails for a reason (`retry` says which errors are worth it).
    pub async fn retrying<T, E, F>(
        &self,
        mut op: impl FnMut() -> F,
        retry: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let deadline = tokio::time::Instant::now() + RETRY_BUDGET;
        let mut delay = Duration::from_millis(25);
        loop {
            let outcome = match tokio::time::timeout(ATTEMPT_TIMEOUT, op()).await {
                Ok(outcome) => outcome,
                Err(_) if tokio::time::Instant::now() + delay < deadline => {
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(_) => return op().await,
            };
            match outcome {
                Err(e) if retry(&e) && tokio::time::Instant::now() + delay < deadline => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(400));
                }
                outcome => return outcome,
            }
        }
    }

    /// Waits until the client is connected again, at most until [`RECONNECT_WAIT`] after it
    /// lost its server; whether it is.
    async fn reconnected(&self, client: &async_nats::Client) -> bool {
        let lost_at = *self.lost_at.lock().expect("lost_at lock");
        let deadline = lost_at.unwrap_or_else(tokio::time::Instant::now) + RECONNECT_WAIT;
        let mut connections = self.connections.subscribe();
        loop {
            if client.connection_state() == async_nats::connection::State::Connected {
                return true;
            }
            let changed = tokio::time::timeout_at(deadline, connections.changed());
            match changed.await {
                Ok(Ok(())) => {}
                // Reconnection events can be missed between the check and the wait: look again.
                Err(_) => {
                    return client.connection_state() == async_nats::connection::State::Connected;
                }
                Ok(Err(_)) => return false,
            }
        }
    }

    /// Whether the client is connected now (false before the first connection).
    pub fn connected(&self) -> bool {
        self.connection.get().is_some_and(|(client, _)| {
            client.connection_state() == async_nats::connection::State::Connected
        })
    }

    /// Changes whenever the client (re)connects.
    pub fn connections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.connections.subscribe()
    }

    async fn connect(&self) -> Result<(async_nats::Client, jetstream::Context)> {
        let _opening = self.meter.opening(false);
        let (connections, address) = (self.connections.clone(), self.address());
        let lost_at = self.lost_at.clone();
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
            .event_callback(move |event| {
                let (connections, address) = (connections.clone(), address.clone());
                let (lost_at, first_attempt_failed) =
                    (lost_at.clone(), first_attempt_failed.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(nats = %address, "connected to NATS");
                            *lost_at.lock().expect("lost_at lock") = None;
                            connections.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(nats = %address, "NATS connection lost; reconnecting");
                            lost_at
                                .lock()
                                .expect("lost_at lock")
                                .get_or_insert_with(tokio::time::Instant::now);
                        }
                        // An attempt that reached no server (the first one, too).
                        async_nats::Event::ClientError(e) => {
                            tracing::debug!(nats = %address, "NATS: {e}");
                            first_attempt_failed.store(true, Ordering::Relaxed);
                            lost_at
                                .lock()
                                .expect("lost_at lock")
                                .get_or_insert_with(tokio::time::Instant::now);
                        }
                        other => tracing::debug!(nats = %address, "NATS: {other}"),
                    }
                }
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
        // A login in the URL (`user:password@`, or `token@`): async-nats does not take it from
        // there itself.
        if let Some(url) = (self.config.url.expose().split(','))
            .filter_map(|url| url::Url::parse(url.trim()).ok())
            .find(|url| !url.username().is_empty())
        {
            let decode = |text: &str| {
                percent_encoding::percent_decode_str(text)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let user = decode(url.username());
            options = match url.password() {
                Some(password) => options.user_and_password(user, decode(password)),
                None => options.token(user),
            };
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

/// What a write to a KV key expects to find there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Anything: a plain put.
    Anything,
    /// The key's last write is this revision (compare-and-set).
    Revision(u64),
    /// The key was never written (or only purged away).
    Absent,
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Stored, at this revision.
    At(u64),
    /// The key did not hold what the write expected: nothing was stored.
    Conflict,
    /// The message is larger than the server's `max_payload`: nothing was stored.
    TooLarge,
}

/// How long one attempt at a write waits for its acknowledgement; the write as a whole gets
/// [`RETRY_BUDGET`], enough for a stream to elect a new leader.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

impl NatsServer {
    /// Writes `value` (or, with `operation` `DEL`/`PURGE`, a marker) to `key` of `kv`,
    /// retried through a lost server or a stream electing its leader until JetStream
    /// acknowledges it. Idempotent across retries: every attempt carries the same message id,
    /// so JetStream stores a write whose acknowledgement was lost once, not twice.
    pub async fn write(
        &self,
        kv: &jetstream::kv::Store,
        key: &str,
        value: bytes::Bytes,
        expect: Expect,
        operation: Option<&'static str>,
    ) -> Result<Written> {
        use jetstream::context::PublishErrorKind as Kind;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", write_id().as_str());
        match expect {
            Expect::Anything => {}
            Expect::Revision(revision) => headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                revision.to_string().as_str(),
            ),
            Expect::Absent => headers.insert("Nats-Expected-Last-Subject-Sequence", "0"),
        }
        if let Some(operation) = operation {
            headers.insert("KV-Operation", operation);
            if operation == "PURGE" {
                headers.insert("Nats-Rollup", "sub");
            }
        }
        let id = headers.get("Nats-Msg-Id").map(|v| v.to_string());
        let subject = format!("{}{key}", kv.put_prefix.as_deref().unwrap_or(&kv.prefix));
        let deadline = tokio::time::Instant::now() + RETRY_BUDGET;
        let mut delay = Duration::from_millis(25);
        // Whether an attempt may have been stored without our hearing of it.
        let mut unsure = false;
        loop {
            let jetstream = self.jetstream().await?;
            let attempt = async {
                jetstream
                    .publish_with_headers(subject.clone(), headers.clone(), value.clone())
                    .await
                    .map_err(|e| (e.kind(), e.to_string()))?
                    .await
                    .map_err(|e| (e.kind(), e.to_string()))
            };
            let error = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
                Ok(Ok(ack)) => return Ok(Written::At(ack.sequence)),
                // After an attempt we did not hear back from, the key may hold that very
                // write (JetStream checks the expected revision before the message id): then
                // this write is done, not in conflict.
                Ok(Err((Kind::WrongLastSequence, _))) if unsure => {
                    let full = format!("{}{key}", kv.prefix);
                    let last = self.retrying(
                        || kv.stream.get_last_raw_message_by_subject(&full),
                        |e| e.kind() != jetstream::stream::LastRawMessageErrorKind::NoMessageFound,
                    );
                    return Ok(match last.await {
                        Ok(last)
                            if last.headers.get("Nats-Msg-Id").map(|v| v.to_string()) == id =>
                        {
                            Written::At(last.sequence)
                        }
                        _ => Written::Conflict,
                    });
                }
                Ok(Err((Kind::WrongLastSequence, _))) => return Ok(Written::Conflict),
                Ok(Err((Kind::MaxPayloadExceeded, _))) => return Ok(Written::TooLarge),
                Ok(Err((_, e))) => e,
                Err(_) => "no acknowledgement in time".to_string(),
            };
            if tokio::time::Instant::now() + delay > deadline {
                self.meter.failed();
                bail!(
                    "unavailable: NATS {} did not store the write to {key:?} of bucket {}: {error}",
                    self.address(),
                    kv.name
                );
            }
            unsure = true;
            tracing::debug!(bucket = %kv.name, key, "write not acknowledged, retrying: {error}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(400));
        }
    }

    /// The KV bucket `name`, made (with `history` values per key and `replicas`) when it does
    /// not exist. Made as the KV convention's stream directly: async-nats's own
    /// `create_key_value` first reads account limits in a form NATS 2.9 does not send.
    pub async fn key_value(
        &self,
        name: &str,
        history: i64,
        replicas: usize,
    ) -> Result<jetstream::kv::Store> {
        let jetstream = self.jetstream().await?;
        let make = jetstream.create_stream(jetstream::stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: history,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        });
        open_or_make(
            &format!("the KV bucket {name:?}"),
            || jetstream.get_key_value(name),
            make,
        )
        .await
    }

    /// The object store `name`, made with `replicas` when it does not exist.
    pub async fn object_store(
        &self,
        name: &str,
        replicas: usize,
    ) -> Result<jetstream::object_store::ObjectStore> {
        let jetstream = self.jetstream().await?;
        let make = jetstream.create_object_store(jetstream::object_store::Config {
            bucket: name.to_string(),
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        });
        let what = format!("the object store {name:?}");
        open_or_make(&what, || jetstream.get_object_store(name), make).await
    }

    /// The latest entry of every key of `kv` matching `filter` (a subject pattern over keys, such
    /// as `tenant.*`), without delete or purge markers: read through an ordered consumer that
    /// delivers the last message per subject, stopping after what was pending when it was made
    /// (so an empty match returns at once instead of waiting for new writes).
    pub async fn latest(
        &self,
        kv: &jetstream::kv::Store,
        filter: &str,
        headers_only: bool,
    ) -> Result<Vec<(String, bytes::Bytes)>> {
        use futures_util::StreamExt;
        self.jetstream().await?;
        let inbox = match self.connection.get() {
            Some((client, _)) => client.new_inbox(),
            None => bail!("NATS {} is not connected", self.address()),
        };
        let consumer = kv
            .stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: inbox,
                filter_subject: format!("{}{filter}", kv.prefix),
                headers_only,
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("cannot list keys of bucket {}: {e}", kv.name))?;
        let mut pending = consumer.cached_info().num_pending;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| anyhow!("cannot list keys of bucket {}: {e}", kv.name))?;
        let mut entries = Vec::new();
        while pending > 0 {
            let message = tokio::time::timeout(CALL_TIMEOUT, messages.next())
                .await
                .map_err(|_| anyhow!("listing keys of bucket {} timed out", kv.name))?
                .ok_or_else(|| anyhow!("listing keys of bucket {} broke off", kv.name))?
                .map_err(|e| anyhow!("cannot list keys of bucket {}: {e}", kv.name))?;
            pending = message.info().map_or(0, |info| info.pending);
            let operation = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("KV-Operation"))
                .map(|value| value.as_str().to_string());
            if operation.is_some_and(|op| op == "DEL" || op == "PURGE") {
                continue;
            }
            if let Some(key) = message.subject.strip_prefix(kv.prefix.as_str()) {
                entries.push((key.to_string(), message.payload.clone()));
            }
        }
        Ok(entries)
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

/// A message id no other write uses: 16 random bytes, hex.
fn write_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    hex::encode(bytes)
}

/// What `open` opens, made by `make` when it is not there yet. Another host may make it at the
/// same moment, so whatever `make` answers, it is opened again.
async fn open_or_make<T, E: std::fmt::Display, M, F: Future<Output = Result<T, E>>>(
    what: &str,
    open: impl Fn() -> F,
    make: impl Future<Output = Result<M, impl std::fmt::Display>>,
) -> Result<T> {
    if let Ok(opened) = open().await {
        return Ok(opened);
    }
    let made = make.await;
    match (open().await, made) {
        (Ok(opened), _) => Ok(opened),
        (Err(_), Err(e)) => Err(anyhow!("cannot create {what}: {e}")),
        (Err(e), Ok(_)) => Err(anyhow!("cannot open {what}: {e}")),
    }
}
