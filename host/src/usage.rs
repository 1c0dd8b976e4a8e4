//! Per-tenant usage an operator can bill from: what each tenant's apps used, added up per
//! hour and kept across restarts.
//!
//! Requests count into [`crate::metrics::Usage`] (atomic adds, nothing else). Every
//! [`FLUSH_INTERVAL`], at shutdown and before every usage query, the ledger takes those
//! totals and adds them to the current hour's bucket in a redb database in the host's state
//! folder (`admin.state/usage.redb`), in one transaction: a commit is durable before the
//! next flush starts, and a crash loses at most what was counted since the last one. A flush
//! that fails puts what it took back, to be written next time.

use crate::metrics::{Amounts, Metrics};
use anyhow::{Context, Result};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often counted usage is written: the most a crash (`kill -9`, power loss) can lose.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(10);

const HOUR: u64 = 3600;

/// (hour: its first second, Unix time; tenant; app) → the hour's amounts, little-endian u64s
/// in [`Amounts::FIELDS`] order.
const BUCKETS: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("usage_by_hour");

pub struct UsageLedger {
    store: Store,
    metrics: Arc<Metrics>,
    /// One flush at a time: a query's and the timer's must not interleave their takes.
    flushing: tokio::sync::Mutex<()>,
}

/// A future of a store's, boxed so that the store can be chosen at startup.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Where the hours are kept: a redb database beside the host ([`UsageLedger::open`]) or, in
/// cluster mode, the cluster's usage bucket ([`crate::cluster::usage`]).
pub trait HourStore: Send + Sync + 'static {
    /// Adds `taken` — (tenant, app, amounts) — to the hour starting at `hour`, in one write.
    fn add<'a>(&'a self, hour: u64, taken: &'a [(String, String, Amounts)]) -> Pending<'a, ()>;
    /// The buckets of the hours that overlap `from..to`, of `tenant` only when given, in
    /// (hour, tenant, app) order.
    fn query<'a>(&'a self, from: u64, to: u64, tenant: Option<&'a str>)
    -> Pending<'a, Vec<Bucket>>;
}

type Store = Box<dyn HourStore>;

struct LocalLedger {
    db: redb::Database,
    path: PathBuf,
}

/// One tenant's app in one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Unix time of the hour's first second.
    pub hour: u64,
    pub tenant: String,
    pub app: String,
    pub amounts: Amounts,
}

impl UsageLedger {
    /// Opens (creating) the ledger at `path`, taking usage from `metrics`.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<UsageLedger> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the state folder {}", dir.display()))?;
        }
        let db = redb::Database::create(path).with_context(|| {
            format!(
                "cannot open the usage ledger {} (is another hostel using this state folder?)",
                path.display()
            )
        })?;
        let local = LocalLedger {
            db,
            path: path.to_path_buf(),
        };
        Ok(UsageLedger::new(Box::new(Arc::new(local)), metrics))
    }

    /// A ledger keeping its hours in `store`, taking usage from `metrics`.
    pub fn new(store: Store, metrics: Arc<Metrics>) -> UsageLedger {
        UsageLedger {
            store,
            metrics,
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Writes what was counted since the last flush into the current hour.
    pub async fn flush(&self) -> Result<()> {
        let _one_at_a_time = self.flushing.lock().await;
        let taken = self.metrics.take_usage();
        if taken.is_empty() {
            return Ok(());
        }
        let hour = now() / HOUR * HOUR;
        let written = self.store.add(hour, &taken).await;
        if written.is_err() {
            self.metrics.give_back_usage(&taken);
        }
        written
    }

    /// The buckets of the hours that overlap `from..to` (Unix seconds), of `tenant` only when
    /// given, in (hour, tenant, app) order. Flushes first, so the current hour is up to date.
    pub async fn query(&self, from: u64, to: u64, tenant: Option<&str>) -> Result<Vec<Bucket>> {
        self.flush().await?;
        self.store.query(from, to, tenant).await
    }

    /// Flushes every [`FLUSH_INTERVAL`] until the ledger is dropped.
    pub fn flush_periodically(self: &Arc<Self>) {
        let ledger = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(ledger) = ledger.upgrade() else {
                    break;
                };
                if let Err(e) = ledger.flush().await {
                    tracing::warn!("usage not written, retrying: {e:#}");
                }
            }
        });
    }
}

impl HourStore for Arc<LocalLedger> {
    fn add<'a>(&'a self, hour: u64, taken: &'a [(String, String, Amounts)]) -> Pending<'a, ()> {
        let (ledger, taken) = (self.clone(), taken.to_vec());
        Box::pin(async move {
            let path = ledger.path.display().to_string();
            tokio::task::spawn_blocking(move || ledger.write(hour, &taken))
                .await
                .context("usage flush failed")?
                .with_context(|| format!("cannot write the usage ledger {path}"))
        })
    }

    fn query<'a>(
        &'a self,
        from: u64,
        to: u64,
        tenant: Option<&'a str>,
    ) -> Pending<'a, Vec<Bucket>> {
        let (ledger, tenant) = (self.clone(), tenant.map(str::to_string));
        Box::pin(async move {
            tokio::task::spawn_blocking(move || ledger.read_hours(from, to, tenant.as_deref()))
                .await
                .context("usage query failed")?
        })
    }
}

impl LocalLedger {
    fn write(&self, hour: u64, taken: &[(String, String, Amounts)]) -> Result<()> {
        let transaction = self.db.begin_write()?;
        {
            let mut table = transaction.open_table(BUCKETS)?;
            for (tenant, app, amounts) in taken {
                let key = (hour, tenant.as_str(), app.as_str());
                let mut total = match table.get(key)? {
                    Some(stored) => decode(stored.value()),
                    None => Amounts::default(),
                };
                total.add(amounts);
                table.insert(key, encode(&total).as_slice())?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    fn read_hours(&self, from: u64, to: u64, tenant: Option<&str>) -> Result<Vec<Bucket>> {
        let transaction = self.db.begin_read()?;
        let table = match transaction.open_table(BUCKETS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut buckets = Vec::new();
        let start = from / HOUR * HOUR;
        for entry in table.range((start, "", "")..(to.max(start), "", ""))? {
            let (key, value) = entry?;
            let (hour, owner, app) = key.value();
            if tenant.is_some_and(|t| t != owner) {
                continue;
            }
            buckets.push(Bucket {
                hour,
                tenant: owner.to_string(),
                app: app.to_string(),
                amounts: decode(value.value()),
            });
        }
        Ok(buckets)
    }
}

fn encode(amounts: &Amounts) -> Vec<u8> {
    amounts
        .to_array()
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

fn decode(bytes: &[u8]) -> Amounts {
    let values: Vec<u64> = bytes
        .as_chunks::<8>()
        .0
        .iter()
        .map(|chunk| u64::from_le_bytes(*chunk))
        .collect();
    Amounts::from_array(&values)
}

/// Unix time, in seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_request(metrics: &Arc<Metrics>, tenant: &str, bytes: u64) {
        let meter = metrics.app(tenant, "shop");
        let request = meter.arrived().unwrap();
        request.headers(200);
        request.finished(bytes);
    }

    #[tokio::test]
    async fn usage_adds_up_per_hour_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.redb");
        let metrics = Metrics::new();
        let ledger = UsageLedger::open(&path, metrics.clone()).unwrap();
        one_request(&metrics, "acme", 10);
        ledger.flush().await.unwrap();
        one_request(&metrics, "acme", 5);
        one_request(&metrics, "globex", 7);
        let all = ledger.query(0, u64::MAX, None).await.unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].tenant, "acme");
        assert_eq!(all[0].amounts.requests, 2);
        assert_eq!(all[0].amounts.bytes_out, 15);
        assert_eq!(all[0].hour % HOUR, 0);
        let own = ledger.query(0, u64::MAX, Some("globex")).await.unwrap();
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].amounts.bytes_out, 7);
        drop(ledger);

        let reopened = UsageLedger::open(&path, Metrics::new()).unwrap();
        assert_eq!(reopened.query(0, u64::MAX, None).await.unwrap(), all);
        // Hours outside the range are left out.
        let hour = all[0].hour;
        assert!(
            reopened
                .query(hour + HOUR, u64::MAX, None)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(reopened.query(hour, hour + 1, None).await.unwrap().len(), 2);
    }

    #[test]
    fn an_older_ledger_with_fewer_fields_reads_as_zero_for_the_new_ones() {
        let amounts = decode(&[3u64.to_le_bytes(), 4u64.to_le_bytes()].concat());
        assert_eq!(amounts.requests, 3);
        assert_eq!(amounts.guest_cpu_ns, 4);
        assert_eq!(amounts.pool_ns, 0);
    }
}
