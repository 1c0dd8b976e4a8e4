//! Usage kept for the whole cluster: every host adds what its requests used to the same
//! `HOUR.TENANT` keys of the usage bucket (a compare-and-set on the key's revision, retried
//! when another host wrote in between), so a query through any host answers for all of them.

use super::Cluster;
use crate::metrics::Amounts;
use crate::usage::{Bucket, HourStore, Pending};
use anyhow::{Context, Result, anyhow, bail};
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One tenant's hour: app → amounts in [`Amounts::FIELDS`] order.
type Hour = BTreeMap<String, Vec<u64>>;

/// Ranges up to this many hours (31 days) are read an hour at a time.
const PER_HOUR_UP_TO: u64 = 31 * 24;

/// Attempts at adding to a key that other hosts keep writing.
const ATTEMPTS: usize = 20;

pub struct ClusterUsage {
    cluster: Arc<Cluster>,
}

impl ClusterUsage {
    pub fn new(cluster: Arc<Cluster>) -> ClusterUsage {
        ClusterUsage { cluster }
    }

    async fn add_hour(&self, hour: u64, taken: &[(String, String, Amounts)]) -> Result<()> {
        let bucket = self.cluster.usage_bucket().await?;
        let mut by_tenant: BTreeMap<&str, Vec<(&str, &Amounts)>> = BTreeMap::new();
        for (tenant, app, amounts) in taken {
            by_tenant.entry(tenant).or_default().push((app, amounts));
        }
        for (tenant, apps) in by_tenant {
            add_to(bucket, &format!("{hour}.{tenant}"), &apps).await?;
        }
        Ok(())
    }

    async fn query_hours(&self, from: u64, to: u64, tenant: Option<&str>) -> Result<Vec<Bucket>> {
        let bucket = self.cluster.usage_bucket().await?;
        let nats = self.cluster.nats();
        let start = from / HOUR * HOUR;
        let end = to.max(start + 1);
        let hours = (end - start).div_ceil(HOUR);
        // The work is bounded by the smaller of the range and what is stored: a range of a few
        // weeks is read an hour at a time, a longer one (up to the year 9999 is allowed) by
        // listing what the tenant (or everyone) has and keeping the hours in range.
        let entries: Vec<(String, Bytes)> = if hours <= PER_HOUR_UP_TO {
            let per_hour = stream::iter((start..end).step_by(HOUR as usize))
                .map(|hour| async move {
                    match tenant {
                        Some(tenant) => {
                            let key = format!("{hour}.{tenant}");
                            let value = (bucket.get(&key).await)
                                .map_err(|e| anyhow!("cannot read usage {key}: {e}"))?;
                            Ok(value.into_iter().map(|v| (key.clone(), v)).collect())
                        }
                        None => nats.latest(bucket, &format!("{hour}.*"), false).await,
                    }
                })
                .buffered(16);
            per_hour.try_concat().await?
        } else {
            let filter = match tenant {
                Some(tenant) => format!("*.{tenant}"),
                None => "*.*".to_string(),
            };
            nats.latest(bucket, &filter, false).await?
        };
        let mut all = Vec::new();
        for (key, value) in entries {
            let Some((hour, owner)) = key.split_once('.') else {
                continue;
            };
            let Ok(hour) = hour.parse::<u64>() else {
                continue;
            };
            if !(start..end).contains(&hour) {
                continue;
            }
            let apps: Hour = serde_json::from_slice(&value)
                .map_err(|e| anyhow!("usage {key} is unreadable: {e}"))?;
            for (app, values) in apps {
                all.push(Bucket {
                    hour,
                    tenant: owner.to_string(),
                    app,
                    amounts: Amounts::from_array(&values),
                });
            }
        }
        all.sort_by(|a, b| (a.hour, &a.tenant, &a.app).cmp(&(b.hour, &b.tenant, &b.app)));
        Ok(all)
    }
}

impl HourStore for ClusterUsage {
    fn add<'a>(&'a self, hour: u64, taken: &'a [(String, String, Amounts)]) -> Pending<'a, ()> {
        Box::pin(async move {
            (self.add_hour(hour, taken).await)
                .context("cannot write usage to the cluster's usage bucket")
        })
    }

    fn query<'a>(
        &'a self,
        from: u64,
        to: u64,
        tenant: Option<&'a str>,
    ) -> Pending<'a, Vec<Bucket>> {
        Box::pin(self.query_hours(from, to, tenant))
    }
}

const HOUR: u64 = 3600;

/// Adds `apps` to the key's totals with a compare-and-set, retried on conflicts.
async fn add_to(bucket: &kv::Store, key: &str, apps: &[(&str, &Amounts)]) -> Result<()> {
    for _ in 0..ATTEMPTS {
        let current = bucket
            .entry(key)
            .await
            .map_err(|e| anyhow!("cannot read usage {key}: {e}"))?;
        let (mut hour, revision): (Hour, Option<u64>) = match &current {
            Some(entry) if entry.operation == kv::Operation::Put => (
                serde_json::from_slice(&entry.value)
                    .map_err(|e| anyhow!("usage {key} is unreadable: {e}"))?,
                Some(entry.revision),
            ),
            Some(entry) => (Hour::new(), Some(entry.revision)),
            None => (Hour::new(), None),
        };
        for (app, amounts) in apps {
            let total = hour.entry(app.to_string()).or_default();
            let mut sum = Amounts::from_array(total);
            sum.add(amounts);
            *total = sum.to_array();
        }
        let value = Bytes::from(serde_json::to_vec(&hour).expect("serialises"));
        let written = match revision {
            Some(revision) => bucket.update(key, value, revision).await.map_err(|e| {
                (e.kind() != kv::UpdateErrorKind::WrongLastRevision).then(|| anyhow!("{e}"))
            }),
            None => bucket.create(key, value).await.map_err(|e| {
                (e.kind() != kv::CreateErrorKind::AlreadyExists).then(|| anyhow!("{e}"))
            }),
        };
        match written {
            Ok(_) => return Ok(()),
            Err(Some(e)) => return Err(e.context(format!("cannot write usage {key}"))),
            Err(None) => tokio::task::yield_now().await,
        }
    }
    bail!("usage {key}: {ATTEMPTS} attempts lost to other hosts' writes")
}
