//! One PostgreSQL pool (deadpool-postgres) and the lease a guest's statement or transaction
//! holds on one of its connections.
//!
//! A lease goes back to the pool clean or not at all: one dropped inside a transaction is
//! rolled back first, one dropped mid-statement (the request timed out) has its statement
//! cancelled and its connection closed.

use super::bindings::hostel::host::postgres::{DbError, Error, Rows, Value};
use super::values::{self, Decoded};
use crate::config::PoolConfig;
use crate::pools::ServerPool;
use anyhow::{Context, Result, anyhow};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, TimeoutType,
};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Statement};

/// Shown in `pg_stat_activity` unless the URL names another `application_name`.
const APPLICATION_NAME: &str = "hostel";

pub struct PostgresPool {
    name: String,
    address: String,
    pool: Pool,
    acquire_timeout: Duration,
    idle_timeout: Duration,
}

impl PostgresPool {
    /// Creates the pool without connecting: connections are opened when first needed.
    pub fn new(name: &str, config: &PoolConfig) -> Result<Arc<PostgresPool>> {
        let address = config.address();
        let mut pg = tokio_postgres::Config::from_str(&config.url).with_context(|| {
            format!(
                "invalid PostgreSQL URL for pool {name:?} ({address}): expected \
                 postgres://user[:password]@host[:port]/database"
            )
        })?;
        if pg.get_application_name().is_none() {
            pg.application_name(APPLICATION_NAME);
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(config.acquire_timeout);
        }
        // `Fast` only checks the socket is open: a statement cache survives recycling, and a
        // lease never comes back dirty (see `Lease`'s drop).
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = crate::pools::build_deadpool(Pool::builder(manager), config)
            .with_context(|| format!("cannot create PostgreSQL pool {name:?} ({address})"))?;
        Ok(Arc::new(PostgresPool {
            name: name.to_string(),
            address,
            pool,
            acquire_timeout: config.acquire_timeout,
            idle_timeout: config.idle_timeout,
        }))
    }

    /// A connection of this pool until the lease is dropped; waits up to the acquire timeout
    /// for one to come free (or to be opened).
    pub async fn lease(self: &Arc<Self>) -> Result<Lease, Error> {
        let conn = self.pool.get().await.map_err(|e| {
            let why = match e {
                PoolError::Timeout(TimeoutType::Wait) => format!(
                    "no connection came free within {:?}; raise max_connections or \
                     acquire_timeout, or hold transactions for less time",
                    self.acquire_timeout
                ),
                PoolError::Timeout(_) => {
                    format!(
                        "the server did not answer within {:?}",
                        self.acquire_timeout
                    )
                }
                PoolError::Backend(e) => e.to_string(),
                PoolError::Closed => "the pool is closed: the host is shutting down".into(),
                other => other.to_string(),
            };
            self.unavailable(&why)
        })?;
        Ok(Lease {
            conn: Some(conn),
            pool: self.clone(),
            in_flight: false,
            in_transaction: false,
        })
    }

    fn unavailable(&self, why: &str) -> Error {
        Error::Unavailable(format!(
            "PostgreSQL pool {:?} ({}) unavailable: {why}",
            self.name, self.address
        ))
    }

    /// Logs a failed call (at warn, naming the pool) and hands the outcome on to the guest.
    pub fn report<T>(&self, outcome: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &outcome {
            let pool = self.name.as_str();
            match e {
                Error::Db(db) => {
                    tracing::warn!(pool, code = %db.code, "statement failed: {}", db.message)
                }
                Error::Finished => {}
                other => tracing::warn!(pool, "{}", describe(other)),
            }
        }
        outcome
    }

    /// What a server or connection error means for the guest: the server's own error as it
    /// reported it, anything else as the pool being unavailable.
    fn failed(&self, e: tokio_postgres::Error) -> Error {
        match e.as_db_error() {
            Some(db) => Error::Db(DbError {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
            }),
            None => self.unavailable(&e.to_string()),
        }
    }
}

/// The guest-facing error as one line, for logs and the startup check.
pub fn describe(e: &Error) -> String {
    match e {
        Error::NoSuchPool(name) => format!("no PostgreSQL pool is named {name:?}"),
        Error::NotGranted(name) => format!("PostgreSQL pool {name:?} is not granted"),
        Error::Unavailable(why) | Error::Conversion(why) => why.clone(),
        Error::Db(db) => format!("{} (SQLSTATE {})", db.message, db.code),
        Error::Finished => "the transaction is already finished".into(),
    }
}

impl ServerPool for PostgresPool {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            let conn = self.pool.get().await.map_err(|e| anyhow!("{e}"))?;
            conn.simple_query("SELECT 1").await?;
            Ok(())
        })
    }

    fn reap_idle(&self) {
        let idle = self.idle_timeout;
        self.pool.retain(|_, metrics| metrics.last_used() < idle);
    }

    fn close(&self) {
        self.pool.close();
    }
}

/// A pooled connection lent to one statement or one transaction.
pub struct Lease {
    /// `None` only once dropped.
    conn: Option<Object>,
    pool: Arc<PostgresPool>,
    /// A statement was sent and its reply not yet read: set across every await on the server,
    /// so a lease dropped with it set was cut off mid-statement.
    in_flight: bool,
    /// Between a successful BEGIN and COMMIT/ROLLBACK.
    in_transaction: bool,
}

impl Lease {
    pub async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Rows, Error> {
        let (statement, params) = self.prepare(sql, params).await?;
        values::check_columns(&statement).map_err(Error::Conversion)?;
        let rows = self
            .on_server(async |conn| conn.query(&statement, &as_sql(&params)).await)
            .await?;
        let rows = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get::<_, Decoded>(i).map(|d| d.0).map_err(|e| {
                            Error::Conversion(format!(
                                "column {:?}: {e}",
                                statement.columns()[i].name()
                            ))
                        })
                    })
                    .collect()
            })
            .collect::<Result<_, _>>()?;
        Ok(Rows {
            columns: values::columns(&statement),
            rows,
        })
    }

    pub async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, Error> {
        let (statement, params) = self.prepare(sql, params).await?;
        self.on_server(async |conn| conn.execute(&statement, &as_sql(&params)).await)
            .await
    }

    /// Starts a transaction: from now on, dropping the lease rolls it back.
    pub async fn begin(&mut self) -> Result<(), Error> {
        self.on_server(async |conn| conn.batch_execute("BEGIN").await)
            .await?;
        self.in_transaction = true;
        Ok(())
    }

    /// Ends the transaction with `COMMIT` or `ROLLBACK`; the connection goes back to the pool
    /// as the lease drops. A server error ends the transaction too (PostgreSQL rolls back a
    /// failed COMMIT); after a lost connection the drop finds it still marked and detaches it.
    pub async fn finish(mut self, sql: &'static str) -> Result<(), Error> {
        let outcome = self
            .on_server(async |conn| conn.batch_execute(sql).await)
            .await;
        if matches!(outcome, Ok(()) | Err(Error::Db(_))) {
            self.in_transaction = false;
        }
        outcome
    }

    /// The statement from this connection's cache (prepared on first use) and the guest's
    /// parameters converted to the types it takes.
    async fn prepare(
        &mut self,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<(Statement, Vec<values::Param>), Error> {
        let statement = self
            .on_server(async |conn| conn.prepare_cached(sql).await)
            .await?;
        let params = values::params(&statement, params).map_err(Error::Conversion)?;
        Ok((statement, params))
    }

    /// Runs one exchange with the server, marked in flight while it lasts.
    async fn on_server<T>(
        &mut self,
        exchange: impl AsyncFnOnce(&Object) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, Error> {
        let conn = self.conn.as_ref().expect("a live lease has its connection");
        self.in_flight = true;
        let outcome = exchange(conn).await;
        self.in_flight = false;
        outcome.map_err(|e| self.pool.failed(e))
    }
}

fn as_sql(params: &[values::Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.in_flight && !self.in_transaction {
            return; // clean: back to the pool as `conn` drops
        }
        let pool = self.pool.name.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left to clean up on: closing the connection makes the server roll back.
            drop(Object::take(conn));
            return;
        };
        if self.in_flight {
            // The reply of the cut-off statement would arrive first on this connection, so it
            // is never reused: cancel the statement (so the server stops working on it) and
            // close the connection, which ends any transaction with it.
            let cancel = conn.cancel_token();
            let client = Object::take(conn);
            tracing::warn!(
                pool,
                "statement cut off (request ended): cancelling it and closing its connection"
            );
            runtime.spawn(async move {
                if let Err(e) = cancel.cancel_query(NoTls).await {
                    tracing::warn!(pool, "could not cancel a cut-off statement: {e}");
                }
                drop(client);
            });
        } else {
            // Bounded, so a server gone silent cannot keep the connection out of the pool.
            let limit = self.pool.acquire_timeout;
            runtime.spawn(async move {
                match tokio::time::timeout(limit, conn.batch_execute("ROLLBACK")).await {
                    Ok(Ok(())) => {
                        tracing::debug!(pool, "rolled back a transaction left open by its guest")
                    }
                    outcome => {
                        let why = match outcome {
                            Ok(Err(e)) => e.to_string(),
                            _ => format!("no answer within {limit:?}"),
                        };
                        tracing::warn!(
                            pool,
                            "closing a connection whose open transaction could not be rolled \
                             back: {why}"
                        );
                        drop(Object::take(conn));
                    }
                }
            });
        }
    }
}
