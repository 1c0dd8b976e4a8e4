//! The deployed set on disk: components stored by content (`blobs/<sha256>.wasm`) and one
//! manifest naming which component serves which tenant, app and route.
//!
//! A crash at any moment leaves the last completed set: a component is written to a temporary
//! file, synced and renamed into place before the manifest names it, and the manifest itself
//! is replaced the same way (temporary file, fsync, rename, fsync of the folder). Blobs no
//! manifest names — a deploy cut off half-way — are removed when the store is opened.

use crate::apps::{Deployment, Manifest};
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct DeploymentStore {
    dir: PathBuf,
}

const MANIFEST: &str = "manifest.json";

impl DeploymentStore {
    /// Opens (creating) the state folder and clears what an interrupted deploy left behind.
    pub fn open(dir: &Path) -> Result<DeploymentStore> {
        let store = DeploymentStore {
            dir: dir.to_path_buf(),
        };
        std::fs::create_dir_all(store.blobs()).with_context(|| {
            format!(
                "cannot create the deployment folder {} (key `admin.state`)",
                dir.display()
            )
        })?;
        let referenced: Vec<String> = store
            .read_manifest()?
            .apps
            .into_iter()
            .map(|d| d.digest)
            .collect();
        for entry in std::fs::read_dir(store.blobs())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = name
                .strip_suffix(".wasm")
                .is_some_and(|digest| referenced.iter().any(|r| r == digest));
            if !keep {
                tracing::info!(file = %entry.path().display(), "removing a component no deployment names");
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let _ = std::fs::remove_file(dir.join(format!("{MANIFEST}.tmp")));
        Ok(store)
    }

    /// The store in `dir` for reading only (`hostel check`): it creates and removes nothing,
    /// so the component of a deploy in flight on a running host is left alone. A missing
    /// folder holds no deployments.
    pub fn read_only(dir: &Path) -> DeploymentStore {
        DeploymentStore {
            dir: dir.to_path_buf(),
        }
    }

    fn blobs(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    fn blob(&self, digest: &str) -> PathBuf {
        self.blobs().join(format!("{digest}.wasm"))
    }

    fn read_manifest(&self) -> Result<Manifest> {
        let path = self.dir.join(MANIFEST);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a deployment manifest: restore it from a backup or remove it \
                     (the deployed apps are then gone)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The deployed set with each component's bytes, checked against its digest.
    pub fn load(&self) -> Result<Vec<(Deployment, Vec<u8>)>> {
        let mut set = Vec::new();
        for deployment in self.read_manifest()?.apps {
            let path = self.blob(&deployment.digest);
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            if hex::encode(Sha256::digest(&bytes)) != deployment.digest {
                bail!(
                    "{} does not match its digest: the file was changed outside hostel",
                    path.display()
                );
            }
            set.push((deployment, bytes));
        }
        Ok(set)
    }

    /// Stores a component durably under its digest; returns the digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        let digest = hex::encode(Sha256::digest(bytes));
        let path = self.blob(&digest);
        if !path.exists() {
            let temp = self
                .blobs()
                .join(format!(".{digest}.{}.tmp", std::process::id()));
            write_synced(&temp, bytes)?;
            std::fs::rename(&temp, &path)
                .with_context(|| format!("cannot move {} into place", path.display()))?;
            sync_dir(&self.blobs())?;
        }
        Ok(digest)
    }

    /// Makes `apps` the deployed set, atomically; then removes blobs nothing names any more.
    pub fn save(&self, apps: &[Deployment]) -> Result<()> {
        let manifest = Manifest {
            apps: apps.to_vec(),
        };
        let temp = self.dir.join(format!("{MANIFEST}.tmp"));
        write_synced(&temp, &serde_json::to_vec_pretty(&manifest)?)?;
        std::fs::rename(&temp, self.dir.join(MANIFEST))
            .with_context(|| format!("cannot replace {}", self.dir.join(MANIFEST).display()))?;
        sync_dir(&self.dir)?;
        for entry in std::fs::read_dir(self.blobs())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(digest) = name.strip_suffix(".wasm")
                && !apps.iter().any(|d| d.digest == digest)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// Now, as RFC 3339 UTC to the second.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
