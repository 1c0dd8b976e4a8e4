//! The NATS backend of `wasi:keyvalue`: a JetStream key-value bucket, on the NATS client that
//! every user of the same settings shares ([`NatsServer`]), so that several hosts serve one
//! set of keys.
//!
//! Layout: one bucket (default `hostel-kv`, history 1) holds every tenant's keys, each as
//! `{namespace}.{token}`. The namespace `tenant:NAME` becomes the subject tokens `tenant.NAME`
//! (tenant names are letters, digits, '-' and '_'), and the guest's key a single token of its
//! own ([`encode_key`]): so any key — empty, with '.', '*', '>', spaces or any Unicode — is a
//! valid NATS key, and a tenant's keys are exactly the subjects `{namespace}.*`. A guest can
//! neither name nor list another tenant's keys.
//!
//! Increment and compare-and-swap are optimistic writes conditioned on the revision read
//! (`Nats-Expected-Last-Subject-Sequence`), so they are atomic across every host on the bucket:
//! increment retries on conflict, a swap reports it to the guest.
//!
//! What differs from the embedded store:
//! - `set-many` and `delete-many` are one write per key, not one transaction: a failure midway
//!   leaves the keys before it written, and a reader meanwhile may see some and not others.
//! - Compare-and-swap compares the entry's revision, not its bytes: a swap fails if the key was
//!   written since it was read, even with the same value (the guest then retries, as on any
//!   conflict). A swap of a key read as absent succeeds if it is absent still.
//! - Keys are at most [`MAX_KEY_BYTES`] (a key is part of a subject, which NATS protocol lines
//!   bound), values at most the server's `max_payload` (1 MiB by default).
//! - `list-keys` reads the headers of every key of the tenant for each page, sorts them and
//!   pages by a skip count (as the embedded store pages): fine for thousands of keys per tenant,
//!   slow for millions.
//! - A deleted key leaves a purge marker (a subject with no value) in the bucket.
//! - While NATS is unreachable every call fails at once with `unavailable` (and is counted as a
//!   store error); the client reconnects by itself, and calls work again when it has.

use crate::capabilities::nats::{Expect, NatsServer, Written};
use crate::capabilities::servers::ServerPool;
use anyhow::{Result, anyhow, bail};
use async_nats::jetstream;
use async_nats::jetstream::consumer::{self, DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::context::{
    PublishError, PublishErrorKind, RequestError, RequestErrorKind,
};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::fmt::Display;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The bucket of a store whose config names none.
pub const DEFAULT_BUCKET: &str = "hostel-kv";
/// The longest guest key, in bytes: encoded (4/3 longer) with the bucket's prefix it stays well
/// inside NATS's 4 KiB protocol line (`max_control_line`), which carries the subject.
pub const MAX_KEY_BYTES: usize = 2048;
/// How often an increment that keeps meeting concurrent writers re-reads and tries again
/// before it gives up with an error.
const INCREMENT_TRIES: u32 = 200;
/// Calls of one batch operation in flight at once.
const IN_FLIGHT: usize = 64;
/// The KV operation header and its values, as the KV protocol writes them (ADR-8).
const KV_OPERATION: &str = "KV-Operation";
const NATS_MARKER_REASON: &str = "Nats-Marker-Reason";

/// Checks a bucket name (`key` names it in the error): NATS allows letters, digits, '-' and
/// '_' in a bucket's name.
pub fn check_bucket(bucket: &str, key: &str) -> Result<()> {
    let ok = !bucket.is_empty()
        && (bucket.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        bail!(
            "key `{key}`: {bucket:?} is not a NATS bucket name (letters, digits, '-' and '_' only)"
        );
    }
    Ok(())
}

/// A guest's key as one NATS subject token: `k` and the base64url (unpadded) of its UTF-8
/// bytes. Letters, digits, '-' and '_' only, never empty and never a '.', so every key — any
/// UTF-8 string, the empty one too — is exactly one valid token, and [`decode_key`] gives it
/// back.
pub fn encode_key(key: &str) -> String {
    format!("k{}", URL_SAFE_NO_PAD.encode(key))
}

/// The guest's key of a token [`encode_key`] made; `None` for anything else.
pub fn decode_key(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.strip_prefix('k')?).ok()?;
    String::from_utf8(bytes).ok()
}

/// The subject tokens of a tenant's namespace: `tenant:acme` is `tenant.acme`. Each part must
/// be a plain name, so that the namespace is a fixed run of tokens no key token can extend.
fn namespace_tokens(namespace: &str) -> Result<String> {
    let plain = |part: &str| {
        !part.is_empty()
            && (part.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !namespace.split(':').all(plain) {
        bail!("the namespace {namespace:?} cannot be written as NATS subject tokens");
    }
    Ok(namespace.replace(':', "."))
}

/// The bucket key of a guest's key in a namespace.
fn bucket_key(namespace: &str, key: &str) -> Result<String> {
    if key.len() > MAX_KEY_BYTES {
        bail!(
            "a key of {} bytes is longer than this NATS store takes ({MAX_KEY_BYTES} bytes)",
            key.len()
        );
    }
    Ok(format!(
        "{}.{}",
        namespace_tokens(namespace)?,
        encode_key(key)
    ))
}

/// A `kind = "nats"` store: the bucket, opened on first use through the shared client.
pub struct NatsStore {
    server: Arc<NatsServer>,
    bucket: String,
    /// Replicas of the bucket if the host creates it.
    replicas: usize,
    /// Set once the bucket was opened (or created); a failed attempt leaves it empty, so the
    /// next call tries again.
    store: OnceCell<kv::Store>,
    /// Increments of one key on this host take turns, so that they contend with other hosts'
    /// only, not with each other: by key, while any holds or waits for it.
    incrementing: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl NatsStore {
    pub fn new(server: Arc<NatsServer>, bucket: &str, replicas: usize) -> Arc<NatsStore> {
        Arc::new(NatsStore {
            server,
            bucket: bucket.to_string(),
            replicas,
            store: OnceCell::new(),
            incrementing: Default::default(),
        })
    }

    /// The bucket. Asks the client first: while it is disconnected this fails at once with
    /// `unavailable`, instead of queueing the call until it times out.
    async fn kv(&self) -> Result<&kv::Store> {
        Ok(self.jetstream_and_kv().await?.1)
    }

    async fn jetstream_and_kv(&self) -> Result<(&jetstream::Context, &kv::Store)> {
        let jetstream = self.server.jetstream().await?;
        let kv = self.store.get_or_try_init(|| self.open(jetstream)).await?;
        Ok((jetstream, kv))
    }

    /// Opens the bucket, creating it (history 1, `replicas`) when it does not exist; one that
    /// exists is used as it is.
    async fn open(&self, _: &jetstream::Context) -> Result<kv::Store> {
        self.server.key_value(&self.bucket, 1, self.replicas).await
    }

    /// Writes to `kv_key` (the bucket's key of the guest's `key`) through the server's
    /// retried, idempotent write.
    async fn write(
        &self,
        kv: &kv::Store,
        (kv_key, key): (&str, &str),
        value: Vec<u8>,
        expect: Expect,
        operation: Option<&'static str>,
    ) -> Result<bool> {
        let len = value.len();
        match self
            .server
            .write(kv, kv_key, value.into(), expect, operation)
            .await?
        {
            Written::At(_) => Ok(true),
            Written::Conflict => Ok(false),
            Written::TooLarge => bail!(
                "value too large: {len} bytes for key {key:?} is more than the NATS server {} \
                 takes in one message (its max_payload)",
                self.server.address()
            ),
        }
    }

    /// An error of a NATS call about `what`, prefixed `unavailable:` when NATS did not answer
    /// (the client is disconnected, or the call timed out) — which guests and operators tell
    /// apart from a refusal.
    fn failed<E: StdError + 'static>(
        &self,
        what: impl Display,
        e: &E,
        timed_out: bool,
    ) -> anyhow::Error {
        let unavailable = timed_out || no_answer(e) || !self.server.connected();
        anyhow!(
            "{}NATS {} bucket {:?}: {what}: {e}",
            if unavailable { "unavailable: " } else { "" },
            self.server.address(),
            self.bucket,
        )
    }

    /// The last entry (a marker too) of `kv_key`, the bucket's key of the guest's `key`;
    /// `None` if it has none.
    ///
    /// Read from the stream's leader (STREAM.MSG.GET), not from any replica as `kv::Store`'s
    /// reads do when the bucket allows direct gets (it does by default): so that a read after
    /// a write — on this host or another — sees it, as on the embedded store.
    async fn entry(&self, kv: &kv::Store, kv_key: &str, key: &str) -> Result<Option<Last>> {
        let full = format!("{}{kv_key}", kv.prefix);
        let read = self.server.retrying(
            || kv.stream.get_last_raw_message_by_subject(&full),
            |e| e.kind() != LastRawMessageErrorKind::NoMessageFound && no_answer(e),
        );
        match read.await {
            Ok(message) => Ok(Some(Last {
                revision: message.sequence,
                value: (!is_marker(&message.headers)).then(|| message.payload.to_vec()),
            })),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(self.failed(format_args!("cannot read key {key:?}"), &e, false)),
        }
    }

    /// The value at `key` and its revision; `None` when absent (never written, or deleted).
    pub async fn read(&self, ns: &str, key: &str) -> Result<Option<(Vec<u8>, u64)>> {
        let kv_key = bucket_key(ns, key)?;
        let kv = self.kv().await?;
        Ok(live(self.entry(kv, &kv_key, key).await?))
    }

    pub async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.read(ns, key).await?.map(|(value, _)| value))
    }

    pub async fn exists(&self, ns: &str, key: &str) -> Result<bool> {
        Ok(self.read(ns, key).await?.is_some())
    }

    /// The values of `keys` in order, read concurrently.
    pub async fn get_many(
        &self,
        ns: &str,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>> {
        let kv_keys = (keys.iter())
            .map(|key| bucket_key(ns, key))
            .collect::<Result<Vec<_>>>()?;
        let kv = self.kv().await?;
        futures_util::stream::iter(keys.into_iter().zip(kv_keys))
            .map(|(key, kv_key)| async move {
                let value = live(self.entry(kv, &kv_key, &key).await?).map(|(value, _)| value);
                Ok((key, value))
            })
            .buffered(IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Writes every entry, concurrently; of a key given twice the last value wins, as in one
    /// transaction. Not atomic as a whole (see the module's doc).
    pub async fn set_many(&self, ns: &str, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        let mut writes = BTreeMap::new();
        for (key, value) in entries {
            writes.insert(bucket_key(ns, &key)?, (key, value));
        }
        if writes.is_empty() {
            return Ok(());
        }
        let kv = self.kv().await?;
        futures_util::stream::iter(writes)
            .map(|(kv_key, (key, value))| async move {
                self.write(kv, (&kv_key, &key), value, Expect::Anything, None)
                    .await
                    .map(drop)
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Deletes every key, concurrently. A purge rather than a delete marker: it also removes
    /// every older revision of the key at once, whatever history the bucket keeps (one it did
    /// not create is used as it is), so a deleted value is gone from the bucket, not kept as
    /// history.
    pub async fn delete_many(&self, ns: &str, keys: Vec<String>) -> Result<()> {
        let mut deletes = BTreeMap::new();
        for key in keys {
            deletes.insert(bucket_key(ns, &key)?, key);
        }
        if deletes.is_empty() {
            return Ok(());
        }
        let kv = self.kv().await?;
        futures_util::stream::iter(deletes)
            .map(|(kv_key, key)| async move {
                let purge = Some("PURGE");
                (self
                    .write(kv, (&kv_key, &key), Vec::new(), Expect::Anything, purge)
                    .await)
                    .map(drop)
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Writes `value` at `key` if it is as read: at `revision`, or (`None`) absent. Whether it
    /// was.
    pub async fn swap(
        &self,
        ns: &str,
        key: &str,
        revision: Option<u64>,
        value: Vec<u8>,
    ) -> Result<bool> {
        let kv_key = bucket_key(ns, key)?;
        let kv = self.kv().await?;
        let at = (kv_key.as_str(), key);
        match revision {
            Some(revision) => {
                self.write(kv, at, value, Expect::Revision(revision), None)
                    .await
            }
            // Absent also means deleted: over a delete or purge marker the write names the
            // marker's revision, so a key deleted since counts as absent, as it does on the
            // embedded store.
            None => {
                if self
                    .write(kv, at, value.clone(), Expect::Absent, None)
                    .await?
                {
                    return Ok(true);
                }
                match self.entry(kv, &kv_key, key).await? {
                    Some(Last {
                        revision,
                        value: None,
                    }) => {
                        self.write(kv, at, value, Expect::Revision(revision), None)
                            .await
                    }
                    _ => Ok(false),
                }
            }
        }
    }

    /// Adds `delta` to the counter at `key`: read it with its revision, write the sum at that
    /// revision; when another writer came in between, read again, after a short random pause
    /// so that contending hosts spread out.
    pub async fn increment(&self, ns: &str, key: &str, delta: i64) -> Result<i64> {
        let kv_key = bucket_key(ns, key)?;
        let turn = {
            let mut turns = self.incrementing.lock().expect("increment turns");
            turns.entry(kv_key.clone()).or_default().clone()
        };
        let incremented = {
            let _turn = turn.lock().await;
            self.increment_now(&kv_key, key, delta).await
        };
        // The last one out removes the key's turn (the map holds one reference, `turn` one).
        let mut turns = self.incrementing.lock().expect("increment turns");
        if Arc::strong_count(&turn) == 2 {
            turns.remove(&kv_key);
        }
        incremented
    }

    async fn increment_now(&self, kv_key: &str, key: &str, delta: i64) -> Result<i64> {
        let kv_key = kv_key.to_string();
        let kv = self.kv().await?;
        for attempt in 0..INCREMENT_TRIES {
            let entry = self.entry(kv, &kv_key, key).await?;
            // A marker's revision too (0: never written): the write then replaces it.
            let revision = entry.as_ref().map_or(0, |entry| entry.revision);
            let current = entry.and_then(|entry| entry.value);
            let next = super::counter::next(key, current.as_deref(), delta)?;
            let expect = match revision {
                0 => Expect::Absent,
                revision => Expect::Revision(revision),
            };
            let value = next.to_string().into_bytes();
            if self.write(kv, (&kv_key, key), value, expect, None).await? {
                return Ok(next);
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        bail!(
            "counter {key:?} was written by others {INCREMENT_TRIES} times while this increment \
             tried; not incremented"
        )
    }

    /// Up to `page` keys after the first `skip` (in key order), and where the next page
    /// starts.
    ///
    /// An ordered consumer filtered on the namespace, delivering the last entry of each key,
    /// headers only; it reads exactly as many as were pending when it was made (none: nothing
    /// to wait for), skipping delete and purge markers.
    pub async fn list_keys(
        &self,
        ns: &str,
        skip: usize,
        page: usize,
    ) -> Result<(Vec<String>, Option<u64>)> {
        let prefix = format!("{}.", namespace_tokens(ns)?);
        let (jetstream, kv) = self.jetstream_and_kv().await?;
        let listing = format!("cannot list the keys of {ns}");
        let consumer = kv
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: jetstream.client().new_inbox(),
                description: Some("hostel list-keys".to_string()),
                filter_subject: format!("{}{prefix}*", kv.prefix),
                headers_only: true,
                deliver_policy: DeliverPolicy::LastPerSubject,
                replay_policy: ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                let timed_out = e.kind() == jetstream::stream::ConsumerErrorKind::TimedOut;
                self.failed(&listing, &e, timed_out)
            })?;
        let pending = consumer.cached_info().num_pending;
        let name = consumer.cached_info().name.clone();
        let mut keys = Vec::new();
        if pending > 0 {
            let mut messages = consumer
                .messages()
                .await
                .map_err(|e| self.failed(&listing, &e, false))?;
            let deadline = tokio::time::Instant::now() + crate::capabilities::nats::CALL_TIMEOUT;
            for _ in 0..pending {
                let message = match tokio::time::timeout_at(deadline, messages.next()).await {
                    Ok(Some(Ok(message))) => message,
                    Ok(Some(Err(e))) => return Err(self.failed(&listing, &e, false)),
                    Ok(None) => break,
                    Err(_) => bail!(
                        "unavailable: NATS {} bucket {:?}: {listing}: the keys did not arrive \
                         within {:?}",
                        self.server.address(),
                        self.bucket,
                        crate::capabilities::nats::CALL_TIMEOUT
                    ),
                };
                let token = (message.subject.as_str())
                    .strip_prefix(kv.prefix.as_str())
                    .and_then(|key| key.strip_prefix(prefix.as_str()));
                let marker = (message.headers.as_ref()).is_some_and(is_marker);
                if let Some(key) = token.and_then(decode_key)
                    && !marker
                {
                    keys.push(key);
                }
                // Fewer may come than were counted (a key rolled up meanwhile): one with nothing
                // pending after it is the last.
                if message.info().is_ok_and(|info| info.pending == 0) {
                    break;
                }
            }
        }
        // The consumer would linger until its inactivity threshold; it is of no further use.
        let stream = kv.stream.clone();
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        keys.sort_unstable();
        let mut keys: Vec<String> = keys.into_iter().skip(skip).take(page + 1).collect();
        let cursor = (keys.len() > page).then(|| {
            keys.truncate(page);
            (skip + page) as u64
        });
        Ok((keys, cursor))
    }
}

/// Readiness and startup (`connect = "eager"` or `"required"`) check that the bucket can be
/// opened (creating it), beyond the server answering.
impl ServerPool for NatsStore {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move { self.kv().await.map(drop) })
    }

    fn reap_idle(&self) {}

    /// The client is closed by its own entry ([`NatsServer`]).
    fn close(&self) {}
}

/// The last message of a key in the bucket.
struct Last {
    /// Its stream sequence: what a conditional write names.
    revision: u64,
    /// `None`: a delete or purge marker.
    value: Option<Vec<u8>>,
}

/// The value and revision of an entry that holds one (not a delete or purge marker).
fn live(entry: Option<Last>) -> Option<(Vec<u8>, u64)> {
    let entry = entry?;
    Some((entry.value?, entry.revision))
}

/// Whether a message of the bucket (by its headers) marks its key deleted or purged.
fn is_marker(headers: &async_nats::HeaderMap) -> bool {
    headers.get(NATS_MARKER_REASON).is_some()
        || (headers.get(KV_OPERATION)).is_some_and(|op| op.as_str() != "PUT")
}

/// The pause before the `attempt`-th retry of an increment: random, up to 1 ms doubled per
/// attempt (at most 16 ms).
fn backoff(attempt: u32) -> Duration {
    let ceiling = 1000u64 << attempt.min(6);
    let random = getrandom::u64().unwrap_or(ceiling / 2);
    Duration::from_micros(random % ceiling)
}

/// Whether NATS did not answer, anywhere in the chain of causes: timed out, no responders,
/// the connection broke.
fn no_answer(e: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(e) = e.downcast_ref::<PublishError>()
            && matches!(
                e.kind(),
                PublishErrorKind::TimedOut
                    | PublishErrorKind::BrokenPipe
                    | PublishErrorKind::StreamNotFound
            )
        {
            return true;
        }
        if let Some(e) = e.downcast_ref::<RequestError>()
            && matches!(
                e.kind(),
                RequestErrorKind::TimedOut | RequestErrorKind::NoResponders
            )
        {
            return true;
        }
        if let Some(e) = e.downcast_ref::<consumer::StreamError>()
            && e.kind() == consumer::StreamErrorKind::TimedOut
        {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What async-nats (and the server) accept as a key: `[-/_=.a-zA-Z0-9]+`, not starting or
    /// ending with '.'.
    fn valid_nats_key(key: &str) -> bool {
        !key.is_empty()
            && !key.starts_with('.')
            && !key.ends_with('.')
            && (key.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_key_encodes_to_one_valid_token_and_back(key in any::<String>()) {
            let token = encode_key(&key);
            prop_assert!(valid_nats_key(&token), "{token:?}");
            prop_assert!(!token.contains('.'), "one token: {token:?}");
            prop_assert_eq!(decode_key(&token), Some(key.clone()));
            let full = bucket_key("tenant:acme-1", &key).unwrap();
            prop_assert!(valid_nats_key(&full), "{full:?}");
            prop_assert_eq!(full.strip_prefix("tenant.acme-1.").and_then(decode_key), Some(key));
        }

        #[test]
        fn distinct_keys_or_namespaces_never_share_a_bucket_key(
            a in any::<String>(), b in any::<String>(),
            na in "[a-z0-9_-]{1,8}", nb in "[a-z0-9_-]{1,8}",
        ) {
            let ka = bucket_key(&format!("tenant:{na}"), &a).unwrap();
            let kb = bucket_key(&format!("tenant:{nb}"), &b).unwrap();
            prop_assert_eq!(ka == kb, a == b && na == nb);
        }
    }

    #[test]
    fn odd_keys_are_valid_and_namespaces_fixed() {
        let long = "é".repeat(MAX_KEY_BYTES / 2);
        for key in [
            "",
            ".",
            "a.b",
            "*",
            ">",
            "a b",
            "日本語",
            "..",
            "k",
            "-",
            long.as_str(),
        ] {
            let full = bucket_key("tenant:a", key).unwrap();
            assert!(valid_nats_key(&full), "{key:?}: {full:?}");
            assert_eq!(
                full.matches('.').count(),
                2,
                "{key:?}: three tokens: {full:?}"
            );
        }
        assert_eq!(encode_key(""), "k");
        assert_eq!(decode_key("x"), None);
        assert_eq!(decode_key("k!"), None);
        let e = bucket_key("tenant:a", &"x".repeat(MAX_KEY_BYTES + 1)).unwrap_err();
        assert!(e.to_string().contains("longer"), "{e}");
        assert!(
            bucket_key("tenant:a.b", "k").is_err(),
            "'.' would add a token"
        );
        assert!(bucket_key("tenant:*", "k").is_err());
        assert!(bucket_key("tenant:", "k").is_err());
    }

    #[test]
    fn bucket_names_are_checked_naming_the_key() {
        check_bucket("hostel-kv_2", "stores.s.bucket").unwrap();
        for bad in ["", "a.b", "a b", "kv*", "é"] {
            let e = check_bucket(bad, "stores.s.bucket")
                .unwrap_err()
                .to_string();
            assert!(e.contains("stores.s.bucket"), "{e}");
        }
    }
}
