//! Cluster mode (`[cluster]`): several identical hosts behind a load balancer share one
//! deployed set, their usage and, through `kind = "nats"` stores, key-value data — all kept
//! by NATS JetStream, never by a reconciler or consensus of Hostel's own. A host keeps only
//! its code cache; anything else it knows it can read again from JetStream.
//!
//! What lives where:
//!
//! | bucket (default name) | kind | holds |
//! |---|---|---|
//! | `hostel-deployments` | KV | `manifest`: the deployed set ([`Manifest`]) — `hosts.ID`: each host's progress |
//! | `hostel-components` | object store | every deployed component, named by its SHA-256 |
//! | `hostel-usage` | KV | `HOUR.TENANT`: usage of a tenant's apps in an hour ([`usage`]) |
//!
//! The manifest is one key, so a change is one compare-and-set on its revision: a deploy
//! through any host is checked against the set that host serves and written only if that is
//! still the cluster's set ([`Cluster::commit`]), which serialises changes across hosts
//! without a lock of our own. Every host follows the key ([`Cluster::follow`]): for each
//! revision it fetches and compiles what it does not serve yet, and only when all of it
//! loaded does it swap its router, at once — a revision that does not load on a host is
//! reported (its progress key, the log, a metric) and not applied there at all.
//!
//! While NATS is unreachable a host serves the last set it applied; deploys are refused with
//! 503; when NATS is back the host reads the manifest again and catches up.

pub mod usage;

use crate::Host;
use crate::apps::{AppKey, Deployment, Installed, Manifest, Origin};
use crate::capabilities::nats::{Expect, NatsServer, Written};
use crate::config::ClusterConfig;
use anyhow::{Context, Result, anyhow, bail};
use async_nats::jetstream::{kv, object_store};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, MutexGuard, OnceCell, watch};

/// The manifest's key in the deployments bucket.
const MANIFEST: &str = "manifest";
/// Components no manifest names are deleted once they are this old: younger ones may belong
/// to a deploy that has stored its component and not yet written the manifest.
const ORPHAN_AGE: Duration = Duration::from_secs(600);

/// This host's membership in a cluster.
pub struct Cluster {
    host: Arc<Host>,
    nats: Arc<NatsServer>,
    config: ClusterConfig,
    host_id: String,
    buckets: OnceCell<Buckets>,
    /// The manifest revision this host serves; locked for every change of the deployed set,
    /// by the admin API and by the follower alike.
    applied: Mutex<Applied>,
    /// The applied revision, for whoever waits for this host to move on.
    progress: watch::Sender<u64>,
    /// This host's latest progress, written under `hosts.ID` by one reporter task
    /// ([`Cluster::start`]), so that reports land in order and a failed one is retried.
    reports: watch::Sender<Option<Progress>>,
}

struct Buckets {
    deployments: kv::Store,
    components: object_store::ObjectStore,
    usage: kv::Store,
}

/// What this host serves of the cluster's deployed set.
#[derive(Debug, Default)]
pub struct Applied {
    /// The manifest's revision (0: none written yet).
    pub revision: u64,
    /// The manifest at that revision: what a change through this host starts from.
    pub manifest: Manifest,
    /// The deployments of it that did not load here (the app's previous version, if any, is
    /// served instead), and why.
    failed: Vec<Failure>,
}

/// A host's progress, as it reports it under `hosts.ID`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub host: String,
    /// The manifest revision the host serves.
    pub revision: u64,
    /// The deployments of it that did not load on the host.
    pub failed: Vec<Failure>,
    /// RFC 3339, UTC.
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub tenant: String,
    pub app: String,
    /// The component that did not load, `sha256:...`.
    pub digest: String,
    pub error: String,
}

/// Why a change of the deployed set was not made.
#[derive(Debug)]
pub enum CommitError {
    /// Another host changed the set since this host applied it: check again and retry.
    Conflict,
    /// JetStream did not take the write (unreachable, no quorum): nothing changed.
    Unavailable(anyhow::Error),
}

impl Cluster {
    pub fn new(host: Arc<Host>, config: &ClusterConfig) -> Result<Arc<Cluster>> {
        let nats = host
            .cluster_nats()
            .context("the host was loaded without [cluster]")?
            .clone();
        let host_id = config.host_id.clone().unwrap_or_else(default_host_id);
        Ok(Arc::new(Cluster {
            host,
            nats,
            config: config.clone(),
            host_id,
            buckets: OnceCell::new(),
            applied: Mutex::new(Applied::default()),
            progress: watch::Sender::new(0),
            reports: watch::Sender::new(None),
        }))
    }

    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// Starts following the deployed set (in the background, for the host's life); the host
    /// reports ready once it has caught up.
    pub fn start(self: &Arc<Self>) {
        let cluster = self.clone();
        tokio::spawn(async move { cluster.follow().await });
        let cluster = Arc::downgrade(self);
        let mut reports = self.reports.subscribe();
        tokio::spawn(async move {
            while reports.changed().await.is_ok() {
                let Some(progress) = reports.borrow_and_update().clone() else {
                    continue;
                };
                let Some(cluster) = cluster.upgrade() else {
                    break;
                };
                // Until written, or replaced by a newer report.
                while let Err(e) = cluster.write_report(&progress).await {
                    tracing::debug!("progress not reported, retrying: {e:#}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if reports.has_changed().unwrap_or(true) {
                        break;
                    }
                }
            }
        });
    }

    async fn write_report(&self, progress: &Progress) -> Result<()> {
        let deployments = &self.buckets().await?.deployments;
        let key = format!("hosts.{}", self.host_id);
        let value = Bytes::from(serde_json::to_vec(progress).expect("serialises"));
        (self.nats)
            .write(deployments, &key, value, Expect::Anything, None)
            .await
            .map(drop)
    }

    /// Opens the buckets, creating those that do not exist yet. Fails at once while NATS is
    /// disconnected, like every call through [`NatsServer::jetstream`].
    async fn buckets(&self) -> Result<&Buckets> {
        self.nats.jetstream().await?;
        self.buckets
            .get_or_try_init(|| async {
                let (nats, config) = (&self.nats, &self.config);
                Ok::<_, anyhow::Error>(Buckets {
                    deployments: nats
                        .key_value(&config.deployments, 8, config.replicas)
                        .await?,
                    components: nats
                        .object_store(&config.components, config.replicas)
                        .await?,
                    usage: nats.key_value(&config.usage, 1, config.replicas).await?,
                })
            })
            .await
    }

    /// The usage bucket, for [`usage::ClusterUsage`].
    pub(crate) async fn usage_bucket(&self) -> Result<&kv::Store> {
        Ok(&self.buckets().await?.usage)
    }

    pub(crate) fn nats(&self) -> &Arc<NatsServer> {
        &self.nats
    }

    /// Locks the deployed set for a change; the guard says which revision this host serves.
    pub async fn lock(&self) -> MutexGuard<'_, Applied> {
        self.applied.lock().await
    }

    /// Waits (at most `limit`) until this host serves a revision after `revision`.
    pub async fn wait_past(&self, revision: u64, limit: Duration) {
        let mut progress = self.progress.subscribe();
        let _ = tokio::time::timeout(limit, progress.wait_for(|r| *r > revision)).await;
    }

    /// Stores a component under its digest (once: a component already there is kept).
    pub async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        let components = &self.buckets().await?.components;
        if components.info(digest).await.is_ok() {
            return Ok(());
        }
        // Retried like the other writes: the object store's stream may be electing a leader
        // (a lost node); putting the same name again replaces what an attempt left.
        let put = |()| {
            let mut reader = bytes;
            async move { components.put(digest, &mut reader).await }
        };
        (self.nats.retrying(|| put(()), |_| true).await)
            .map_err(|e| anyhow!("cannot store component sha256:{digest}: {e}"))?;
        Ok(())
    }

    /// Makes `apps` the cluster's deployed set if the cluster is still at the revision this
    /// host serves (`applied`), and records the new revision there. The caller installs the
    /// change on this host before it lets go of the lock.
    pub async fn commit(
        &self,
        applied: &mut Applied,
        apps: &[Deployment],
    ) -> Result<u64, CommitError> {
        let buckets = self.buckets().await.map_err(CommitError::Unavailable)?;
        let manifest = Manifest {
            apps: apps.to_vec(),
        };
        let value = Bytes::from(serde_json::to_vec(&manifest).expect("manifests serialise"));
        let expect = match applied.revision {
            0 => Expect::Absent,
            revision => Expect::Revision(revision),
        };
        let written = (self.nats)
            .write(&buckets.deployments, MANIFEST, value, expect, None)
            .await
            .map_err(CommitError::Unavailable)?;
        let written = match written {
            Written::At(revision) => revision,
            Written::Conflict => return Err(CommitError::Conflict),
            Written::TooLarge => {
                return Err(CommitError::Unavailable(anyhow!(
                    "the deployed set ({} apps) is larger than NATS takes in one message: raise \
                     the servers' max_payload, or remove apps",
                    apps.len()
                )));
            }
        };
        applied.revision = written;
        applied.manifest = manifest;
        self.progress.send_replace(written);
        self.report(applied);
        self.collect_garbage(apps);
        Ok(written)
    }

    /// Follows the manifest for the host's life: reads it, applies it, then applies every
    /// change; starts over when NATS reconnects (what changed meanwhile is not replayed to a
    /// watcher) or the watch breaks off.
    async fn follow(self: Arc<Self>) {
        let mut connections = self.nats.connections();
        let mut delay = Duration::from_millis(200);
        loop {
            connections.borrow_and_update();
            let followed = tokio::select! {
                followed = self.follow_once() => followed,
                _ = connections.changed() => Ok(()),
            };
            match followed {
                Ok(()) => delay = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!("cannot follow the cluster's deployed set (retrying): {e:#}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn follow_once(&self) -> Result<()> {
        let deployments = &self.buckets().await?.deployments;
        let current = deployments
            .entry(MANIFEST)
            .await
            .map_err(|e| anyhow!("cannot read the manifest: {e}"))?;
        match current {
            Some(entry) => self.apply(entry.revision, manifest_of(&entry)).await?,
            None => self.apply(0, Ok(Manifest::default())).await?,
        }
        // Caught up: whatever it serves now is the cluster's set as of this moment.
        self.host.readiness().set_caught_up();
        let mut changes = deployments
            .watch_with_history(MANIFEST)
            .await
            .map_err(|e| anyhow!("cannot watch the manifest: {e}"))?;
        while let Some(entry) = changes.next().await {
            let entry = entry.map_err(|e| anyhow!("watching the manifest: {e}"))?;
            self.apply(entry.revision, manifest_of(&entry)).await?;
        }
        bail!("the manifest's watch ended")
    }

    /// Serves revision `revision` of the deployed set if it is newer than what this host
    /// serves: every deployment that loads, in one router swap; one that does not is
    /// reported, and the app's previous version (if any) stays. Errors are those worth
    /// retrying (NATS unreachable while fetching a component).
    async fn apply(&self, revision: u64, manifest: Result<Manifest>) -> Result<()> {
        let mut applied = self.applied.lock().await;
        if revision < applied.revision || (revision == applied.revision && revision != 0) {
            return Ok(());
        }
        let manifest = match manifest {
            Ok(manifest) => manifest,
            Err(e) => {
                tracing::error!(revision, "not applying the cluster's deployed set: {e:#}");
                self.host.metrics().cluster_apply_failed();
                return Ok(());
            }
        };
        let (changes, failed) = self.load_changes(&manifest, &applied.failed).await?;
        let before = self.host.installed();
        for (key, app) in &changes {
            let kind = match (app, before.iter().any(|(k, _)| k == key)) {
                (None, _) => "remove",
                (Some(_), true) => "swap",
                (Some(_), false) => "deploy",
            };
            self.host.metrics().app_changed(kind);
        }
        let count = changes.len();
        self.host.change(changes);
        for failure in failed.iter().filter(|f| {
            !applied
                .failed
                .iter()
                .any(|k| k.digest == f.digest && k.app == f.app && k.tenant == f.tenant)
        }) {
            tracing::error!(
                revision,
                tenant = %failure.tenant,
                app = %failure.app,
                component = %failure.digest,
                "a deployment of the cluster's set does not load on this host (its previous \
                 version, if any, stays): {}",
                failure.error
            );
            self.host.metrics().cluster_apply_failed();
        }
        if count > 0 {
            tracing::info!(
                revision,
                changes = count,
                "serving the cluster's deployed set"
            );
        }
        applied.revision = revision;
        applied.manifest = manifest;
        applied.failed = failed;
        self.progress.send_replace(revision);
        self.report(&applied);
        Ok(())
    }

    /// What to install and remove to serve `manifest`, and the deployments that did not load;
    /// `Err` when a component could not be fetched (retried).
    async fn load_changes(
        &self,
        manifest: &Manifest,
        known: &[Failure],
    ) -> Result<(Vec<(AppKey, Option<Installed>)>, Vec<Failure>)> {
        let installed = self.host.installed();
        let serving = |key: &AppKey| installed.iter().find(|(k, _)| k == key).map(|(_, i)| i);
        let (mut changes, mut failed) = (Vec::new(), Vec::new());
        for deployment in &manifest.apps {
            let key = (deployment.tenant.clone(), deployment.app.clone());
            match serving(&key) {
                Some(Installed {
                    origin: Origin::Config(path),
                    ..
                }) => {
                    tracing::warn!(
                        tenant = %key.0, app = %key.1,
                        "not serving a deployed app: this host's config has an app of that name ({})",
                        path.display()
                    );
                    continue;
                }
                Some(Installed {
                    app,
                    origin: Origin::Deployed(current),
                }) if current.digest == deployment.digest && current.route == deployment.route => {
                    if current != deployment {
                        let origin = Origin::Deployed(deployment.clone());
                        changes.push((
                            key,
                            Some(Installed {
                                app: app.clone(),
                                origin,
                            }),
                        ));
                    }
                    continue;
                }
                _ => {}
            }
            // What did not load here will not: the host, its config and the component are as
            // they were.
            let digest = format!("sha256:{}", deployment.digest);
            if let Some(failure) = known
                .iter()
                .find(|f| (&f.tenant, &f.app, &f.digest) == (&key.0, &key.1, &digest))
            {
                failed.push(failure.clone());
                continue;
            }
            let bytes = self.component(&deployment.digest).await?;
            let host = self.host.clone();
            let wanted = deployment.clone();
            let loaded =
                tokio::task::spawn_blocking(move || host.load_deployed(&wanted, &bytes)).await?;
            let error = match loaded {
                Ok(Some(app)) => {
                    changes.push((key, Some(app)));
                    continue;
                }
                // Hosts whose configs differ (a rolling config change) serve different sets.
                Ok(None) => format!("tenant `{}` is not in this host's config", key.0),
                Err(e) => format!("{e:#}"),
            };
            failed.push(Failure {
                tenant: key.0,
                app: key.1,
                digest,
                error,
            });
        }
        for (key, app) in &installed {
            let deployed = matches!(app.origin, Origin::Deployed(_));
            if deployed
                && !manifest
                    .apps
                    .iter()
                    .any(|d| (&d.tenant, &d.app) == (&key.0, &key.1))
            {
                changes.push((key.clone(), None));
            }
        }
        Ok((changes, failed))
    }

    /// A component's bytes from the object store, checked against its digest.
    async fn component(&self, digest: &str) -> Result<Vec<u8>> {
        let components = &self.buckets().await?.components;
        let mut object = components
            .get(digest)
            .await
            .map_err(|e| anyhow!("cannot fetch component sha256:{digest}: {e}"))?;
        // No bigger than the admin API takes: whoever can write the bucket cannot make every
        // host read gigabytes into memory.
        let size = object.info().size;
        if size > crate::apps::MAX_COMPONENT {
            bail!(
                "component sha256:{digest} in the object store is {size} bytes, more than the {} \
                 a deploy may have",
                crate::apps::MAX_COMPONENT
            );
        }
        let mut bytes = Vec::with_capacity(size);
        (&mut object)
            .take(crate::apps::MAX_COMPONENT as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .with_context(|| format!("cannot fetch component sha256:{digest}"))?;
        if hex::encode(Sha256::digest(&bytes)) != digest {
            bail!("component sha256:{digest} in the object store does not match its digest");
        }
        Ok(bytes)
    }

    /// Hands this host's progress to the reporter, which writes it under `hosts.ID`.
    fn report(&self, applied: &Applied) {
        self.host.metrics().cluster_revision(applied.revision);
        self.reports.send_replace(Some(Progress {
            host: self.host_id.clone(),
            revision: applied.revision,
            failed: applied.failed.clone(),
            at: crate::admin::deployments::now(),
        }));
    }

    /// The manifest's revision and every host's progress, for `GET /v1/cluster`.
    pub async fn status(&self) -> Result<(u64, Vec<Progress>)> {
        let deployments = &self.buckets().await?.deployments;
        let revision = (deployments.entry(MANIFEST).await)
            .map_err(|e| anyhow!("cannot read the manifest: {e}"))?
            .map_or(0, |entry| entry.revision);
        let hosts = self.nats.latest(deployments, "hosts.*", false).await?;
        let hosts = (hosts.iter())
            .filter_map(|(_, value)| serde_json::from_slice(value).ok())
            .collect();
        Ok((revision, hosts))
    }

    /// Deletes, in the background, components that `apps` does not name and that are older
    /// than [`ORPHAN_AGE`]: replaced versions and deploys that never wrote the manifest.
    fn collect_garbage(&self, apps: &[Deployment]) {
        let Some(buckets) = self.buckets.get() else {
            return;
        };
        let components = buckets.components.clone();
        let keep: Vec<String> = apps.iter().map(|d| d.digest.clone()).collect();
        tokio::spawn(async move {
            let Ok(mut list) = components.list().await else {
                return;
            };
            let now = unix_now() as i64;
            let mut orphans = Vec::new();
            while let Some(Ok(info)) = list.next().await {
                let modified = info.modified.map_or(now, |m| m.unix_timestamp());
                let old = now.saturating_sub(modified) > ORPHAN_AGE.as_secs() as i64;
                if old && !info.deleted && !keep.contains(&info.name) {
                    orphans.push(info.name);
                }
            }
            for name in orphans {
                match components.delete(&name).await {
                    Ok(()) => {
                        tracing::info!(component = %name, "deleted a component no deployment names")
                    }
                    Err(e) => tracing::debug!(component = %name, "not deleted: {e}"),
                }
            }
        });
    }
}

fn manifest_of(entry: &kv::Entry) -> Result<Manifest> {
    match entry.operation {
        kv::Operation::Put => serde_json::from_slice(&entry.value).with_context(|| {
            format!(
                "revision {} of the manifest is not a deployment manifest",
                entry.revision
            )
        }),
        kv::Operation::Delete | kv::Operation::Purge => Ok(Manifest::default()),
    }
}

/// The machine's host name and the process id, made fit for a key.
fn default_host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "host".to_string());
    let name: String = (name.trim().chars())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{name}-{}", std::process::id())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
