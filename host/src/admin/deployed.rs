//! Where the admin API keeps the deployed set: beside the host ([`DeploymentStore`]) or, in
//! cluster mode, in JetStream for every host ([`Cluster`]). Either way a change is made under
//! one lock, component first and manifest second, so that no crash or failure leaves a
//! manifest naming a component that is not stored.

use super::deployments::DeploymentStore;
use crate::apps::{AppKey, Deployment, Installed};
use crate::cluster::{Applied, Cluster, CommitError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// How often a change that lost the race to another host's is checked and tried again.
const ATTEMPTS: usize = 5;

pub enum DeployedSet {
    Local {
        store: DeploymentStore,
        /// One change at a time: checks, blob, manifest and swap happen together.
        changes: Mutex<()>,
    },
    Cluster(Arc<Cluster>),
}

/// The right to change the deployed set, until dropped.
pub enum Change<'a> {
    Local(MutexGuard<'a, ()>),
    Cluster(MutexGuard<'a, Applied>),
}

/// Why a change was not made; nothing changed.
pub enum Refused {
    /// Another host changed the set first, [`ATTEMPTS`] times.
    Conflict,
    /// The cluster's store did not take it (NATS unreachable, no quorum).
    Unavailable(anyhow::Error),
    /// The local store failed (disk).
    Failed(anyhow::Error),
}

impl DeployedSet {
    pub fn local(store: DeploymentStore) -> DeployedSet {
        DeployedSet::Local {
            store,
            changes: Mutex::new(()),
        }
    }

    pub async fn lock(&self) -> Change<'_> {
        match self {
            DeployedSet::Local { changes, .. } => Change::Local(changes.lock().await),
            DeployedSet::Cluster(cluster) => Change::Cluster(cluster.lock().await),
        }
    }

    /// The deployed set a change starts from: on one host, what it serves; in a cluster, the
    /// manifest the host last applied (with any deployment that did not load here).
    pub fn current(
        &self,
        change: &Change<'_>,
        installed: &[(AppKey, Installed)],
    ) -> Vec<Deployment> {
        match change {
            Change::Local(_) => super::deployed(installed),
            Change::Cluster(applied) => applied.manifest.apps.clone(),
        }
    }

    /// Stores a component durably; returns its digest.
    pub async fn store_component(&self, bytes: &[u8]) -> Result<String, Refused> {
        match self {
            DeployedSet::Local { store, .. } => store.put_blob(bytes).map_err(Refused::Failed),
            DeployedSet::Cluster(cluster) => {
                let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
                (cluster.put_component(&digest, bytes).await).map_err(Refused::Unavailable)?;
                Ok(digest)
            }
        }
    }

    /// Makes `apps` the deployed set. `Ok(false)`: another host changed it first; the caller
    /// lets go of the lock ([`DeployedSet::wait_for_others`]), checks again and retries.
    pub async fn commit(
        &self,
        change: &mut Change<'_>,
        apps: &[Deployment],
    ) -> Result<bool, Refused> {
        match (self, change) {
            (DeployedSet::Local { store, .. }, Change::Local(_)) => {
                store.save(apps).map_err(Refused::Failed)?;
                Ok(true)
            }
            (DeployedSet::Cluster(cluster), Change::Cluster(applied)) => {
                match cluster.commit(applied, apps).await {
                    Ok(_) => Ok(true),
                    Err(CommitError::Conflict) => Ok(false),
                    Err(CommitError::Unavailable(e)) => Err(Refused::Unavailable(e)),
                }
            }
            _ => unreachable!("a change is locked on its own set"),
        }
    }

    /// After a lost race (`attempt` of them): lets go of the lock and waits until this host
    /// serves the set the other host wrote; `Err` when it is time to give up.
    pub async fn wait_for_others(&self, change: Change<'_>, attempt: usize) -> Result<(), Refused> {
        if attempt + 1 >= ATTEMPTS {
            return Err(Refused::Conflict);
        }
        if let (DeployedSet::Cluster(cluster), Change::Cluster(applied)) = (self, change) {
            let revision = applied.revision;
            drop(applied);
            cluster.wait_past(revision, Duration::from_secs(5)).await;
        }
        Ok(())
    }
}
