//! One PostgreSQL login's pool (deadpool-postgres) and the lease a guest's statement or
//! transaction holds on one of its connections.
//!
//! A lease goes back to the pool clean or not at all: after a statement or a transaction the
//! session is reset ([`hygiene`]); one dropped inside a transaction is rolled back and reset
//! first; one dropped mid-statement (the request timed out) has its statement cancelled and
//! its connection closed.

use super::bindings::hostel::host::postgres::{DbError, Error, Rows, Value};
use super::hygiene::{self, Context as Where};
use super::server::{self, Server};
use super::tenants::Provisioner;
use super::values::{self, Decoded};
use crate::config::PoolConfig;
use anyhow::{Result, anyhow};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, TimeoutType,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

pub struct PostgresPool {
    /// The pool's name in the config, and the tenant for a per-tenant login.
    name: String,
    address: String,
    pool: Pool,
    tls: MakeRustlsConnect,
    acquire_timeout: Duration,
    idle_timeout: Duration,
    /// For a tenant's own login: made (or repaired) before its first connection.
    provisioning: Option<Provisioning>,
}

/// A tenant login's provisioning state.
struct Provisioning {
    provisioner: Arc<Provisioner>,
    tenant: String,
    done: AtomicBool,
    /// One provisioning at a time per tenant.
    running: tokio::sync::Mutex<()>,
}

/// What a statement answers.
pub enum Answer {
    Rows(Rows),
    Affected(u64),
}

/// Which answer a statement's caller wants.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Rows,
    Affected,
}

impl PostgresPool {
    /// Creates the pool of `server`'s login without connecting: connections are opened when
    /// first needed. `name` names it in log lines and errors.
    pub fn new(name: &str, server: Server, config: &PoolConfig) -> Result<Arc<PostgresPool>> {
        Self::build(name, server, config, None)
    }

    /// The pool of `tenant`'s own login, provisioned by `provisioner` before first use.
    pub fn for_tenant(
        name: &str,
        tenant: &str,
        provisioner: Arc<Provisioner>,
        config: &PoolConfig,
    ) -> Result<Arc<PostgresPool>> {
        let server = provisioner.tenant_login(tenant);
        let provisioning = Provisioning {
            provisioner,
            tenant: tenant.to_string(),
            done: AtomicBool::new(false),
            running: tokio::sync::Mutex::new(()),
        };
        Self::build(
            &format!("{name}/{tenant}"),
            server,
            config,
            Some(provisioning),
        )
    }

    fn build(
        name: &str,
        server: Server,
        config: &PoolConfig,
        provisioning: Option<Provisioning>,
    ) -> Result<Arc<PostgresPool>> {
        let address = server.address();
        // `Fast` only checks the socket is open: a statement cache survives recycling, and a
        // lease never comes back dirty (see `Lease`'s drop and `hygiene`).
        let manager = Manager::from_config(
            server.login,
            server.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = crate::pools::build_deadpool(Pool::builder(manager), config)
            .map_err(|e| anyhow!("cannot create PostgreSQL pool {name:?} ({address}): {e}"))?;
        Ok(Arc::new(PostgresPool {
            name: name.to_string(),
            address,
            pool,
            tls: server.tls,
            acquire_timeout: config.acquire_timeout,
            idle_timeout: config.idle_timeout,
            provisioning,
        }))
    }

    /// A connection of this pool until the lease is dropped; waits up to the acquire timeout
    /// for one to come free (or to be opened).
    pub async fn lease(self: &Arc<Self>) -> Result<Lease, Error> {
        self.ensure_provisioned().await?;
        let conn = match self.pool.get().await {
            Ok(conn) => conn,
            // A tenant's login that stopped working (its password was changed from inside):
            // provision it again, once.
            Err(PoolError::Backend(e)) if self.provisioning.is_some() && is_login_failure(&e) => {
                tracing::warn!(pool = %self.name, "tenant login refused ({e}): provisioning it again");
                if let Some(p) = &self.provisioning {
                    p.done.store(false, Ordering::Release);
                }
                self.ensure_provisioned().await?;
                self.pool.get().await.map_err(|e| self.pool_error(e))?
            }
            Err(e) => return Err(self.pool_error(e)),
        };
        Ok(Lease {
            conn: Some(conn),
            pool: self.clone(),
            in_flight: false,
            in_transaction: false,
            dirty: false,
        })
    }

    async fn ensure_provisioned(&self) -> Result<(), Error> {
        let Some(p) = &self.provisioning else {
            return Ok(());
        };
        if p.done.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one_at_a_time = p.running.lock().await;
        if p.done.load(Ordering::Acquire) {
            return Ok(());
        }
        let limit = self.acquire_timeout.max(Duration::from_secs(10));
        match tokio::time::timeout(limit, p.provisioner.provision(&p.tenant)).await {
            Ok(Ok(())) => {
                p.done.store(true, Ordering::Release);
                Ok(())
            }
            Ok(Err(e)) => Err(self.unavailable(&format!(
                "cannot provision the tenant's login role and database: {e:#}"
            ))),
            Err(_) => Err(self.unavailable(&format!(
                "provisioning the tenant's login role and database took longer than {limit:?}"
            ))),
        }
    }

    fn pool_error(&self, e: PoolError) -> Error {
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
            PoolError::Backend(e) => server::explain(&e),
            PoolError::Closed => "the pool is closed: the host is shutting down".into(),
            other => other.to_string(),
        };
        self.unavailable(&why)
    }

    fn unavailable(&self, why: &str) -> Error {
        Error::Unavailable(crate::secrets::redact_text(&format!(
            "PostgreSQL pool {:?} ({}) unavailable: {why}",
            self.name, self.address
        )))
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
            None => self.unavailable(&server::explain(&e)),
        }
    }

    /// Makes sure the server answers, provisioning a tenant's login if need be.
    pub async fn check(self: &Arc<Self>) -> Result<()> {
        let lease = self.lease().await.map_err(|e| anyhow!(describe(&e)))?;
        let conn = lease
            .conn
            .as_ref()
            .expect("a live lease has its connection");
        conn.simple_query("SELECT 1").await?;
        Ok(())
    }

    pub fn reap_idle(&self) {
        let idle = self.idle_timeout;
        self.pool.retain(|_, metrics| metrics.last_used() < idle);
    }

    pub fn close(&self) {
        self.pool.close();
    }
}

/// Whether connecting failed because the server refused the login.
fn is_login_failure(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::INVALID_PASSWORD) | Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    )
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
    /// The session could not be reset: the connection is closed, never reused.
    dirty: bool,
}

impl Lease {
    /// One statement on its own (autocommit), then the session reset, in one round trip.
    pub async fn alone(
        mut self,
        sql: &str,
        mut params: Vec<Value>,
        want: Want,
    ) -> Result<Answer, Error> {
        hygiene::check_statement(sql, Where::Alone)?;
        let mut retried = false;
        loop {
            let (statement, converted) = self.prepare(sql, params, want).await?;
            let conn = self.conn.as_ref().expect("a live lease has its connection");
            self.in_flight = true;
            let (outcome, reset) = tokio::join!(
                run(conn, &statement, &converted, want),
                hygiene::reset(conn)
            );
            self.in_flight = false;
            self.settle(reset);
            match outcome {
                // The host's cached statement is gone (the guest ran DEALLOCATE ALL or DISCARD
                // ALL) or no longer fits (the guest changed the table): prepare it again, once.
                // Both fail before the statement runs, so running it again is safe.
                Err(e) if !retried && !self.dirty && is_stale_statement(&e) => {
                    retried = true;
                    self.forget_statements();
                    params = params_back(converted);
                }
                outcome => {
                    let ran = outcome.map_err(|e| self.pool.failed(e))?;
                    return decode(ran, &statement);
                }
            }
        }
    }

    /// One statement inside this lease's transaction.
    pub async fn in_transaction(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        want: Want,
    ) -> Result<Answer, Error> {
        hygiene::check_statement(sql, Where::Transaction)?;
        let (statement, params) = self.prepare(sql, params, want).await?;
        let conn = self.conn.as_ref().expect("a live lease has its connection");
        self.in_flight = true;
        let outcome = run(conn, &statement, &params, want).await;
        self.in_flight = false;
        let answer = outcome.map_err(|e| self.pool.failed(e))?;
        decode(answer, &statement)
    }

    /// Starts a transaction: from now on, dropping the lease rolls it back.
    pub async fn begin(&mut self) -> Result<(), Error> {
        let conn = self.conn.as_ref().expect("a live lease has its connection");
        self.in_flight = true;
        let outcome = conn.batch_execute("BEGIN").await;
        self.in_flight = false;
        outcome.map_err(|e| self.pool.failed(e))?;
        self.in_transaction = true;
        Ok(())
    }

    /// Ends the transaction with `COMMIT` or `ROLLBACK`, then resets the session, in one round
    /// trip; the connection goes back to the pool as the lease drops. A server error ends the
    /// transaction too (PostgreSQL rolls back a failed COMMIT); after a lost connection the
    /// drop finds it still marked and closes it.
    pub async fn finish(mut self, sql: &'static str) -> Result<(), Error> {
        let conn = self.conn.as_ref().expect("a live lease has its connection");
        self.in_flight = true;
        let (outcome, reset) = tokio::join!(conn.batch_execute(sql), hygiene::reset(conn));
        self.in_flight = false;
        // Ended either way, unless the connection itself failed (then the drop closes it).
        if outcome
            .as_ref()
            .err()
            .is_none_or(|e| e.as_db_error().is_some())
        {
            self.in_transaction = false;
        }
        self.settle(reset);
        outcome.map_err(|e| self.pool.failed(e))
    }

    /// Records the outcome of a reset: a connection that could not be reset is closed.
    fn settle(&mut self, reset: Result<(), hygiene::Unclean>) {
        if let Err(hygiene::Unclean(why)) = reset {
            tracing::warn!(pool = %self.pool.name, "closing a connection that could not be reset: {why}");
            self.dirty = true;
        }
    }

    /// The statement from this connection's cache (prepared on first use) and the guest's
    /// parameters converted to the types it takes; a statement whose columns cannot be
    /// returned is refused before it runs.
    async fn prepare(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        want: Want,
    ) -> Result<(Statement, Vec<values::Param>), Error> {
        let conn = self.conn.as_ref().expect("a live lease has its connection");
        self.in_flight = true;
        let statement = conn.prepare_cached(sql).await;
        self.in_flight = false;
        let statement = statement.map_err(|e| self.pool.failed(e))?;
        let params = values::params(&statement, params).map_err(Error::Conversion)?;
        if want == Want::Rows {
            values::check_columns(&statement).map_err(Error::Conversion)?;
        }
        Ok((statement, params))
    }

    /// Drops this connection's cached statements (the server no longer has them).
    fn forget_statements(&self) {
        if let Some(conn) = &self.conn {
            conn.statement_cache.clear();
        }
    }
}

/// The guest's values back from the converted parameters, to convert them again.
fn params_back(params: Vec<values::Param>) -> Vec<Value> {
    params.into_iter().map(values::Param::into_value).collect()
}

/// Whether a statement failed because the host's prepared statement is stale.
fn is_stale_statement(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(&SqlState::INVALID_SQL_STATEMENT_NAME) => true,
        Some(&SqlState::FEATURE_NOT_SUPPORTED) => e.as_db_error().is_some_and(|db| {
            db.message()
                .contains("cached plan must not change result type")
        }),
        _ => false,
    }
}

enum Ran {
    Rows(Vec<Row>),
    Affected(u64),
}

async fn run(
    conn: &Object,
    statement: &Statement,
    params: &[values::Param],
    want: Want,
) -> Result<Ran, tokio_postgres::Error> {
    let params = as_sql(params);
    match want {
        Want::Rows => conn.query(statement, &params).await.map(Ran::Rows),
        Want::Affected => conn.execute(statement, &params).await.map(Ran::Affected),
    }
}

fn decode(ran: Ran, statement: &Statement) -> Result<Answer, Error> {
    let rows = match ran {
        Ran::Affected(n) => return Ok(Answer::Affected(n)),
        Ran::Rows(rows) => rows,
    };
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
    Ok(Answer::Rows(Rows {
        columns: values::columns(statement),
        rows,
    }))
}

fn as_sql(params: &[values::Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.dirty {
            drop(Object::take(conn));
            return;
        }
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
            let tls = self.pool.tls.clone();
            tracing::warn!(
                pool,
                "statement cut off (request ended): cancelling it and closing its connection"
            );
            runtime.spawn(async move {
                if let Err(e) = cancel.cancel_query(tls).await {
                    tracing::warn!(pool, "could not cancel a cut-off statement: {e}");
                }
                drop(client);
            });
        } else {
            // Bounded, so a server gone silent cannot keep the connection out of the pool.
            let limit = self.pool.acquire_timeout;
            runtime.spawn(async move {
                let clean = async {
                    conn.batch_execute("ROLLBACK")
                        .await
                        .map_err(|e| e.to_string())?;
                    hygiene::reset(&conn).await.map_err(|e| e.0)
                };
                match tokio::time::timeout(limit, clean).await {
                    Ok(Ok(())) => {
                        tracing::debug!(pool, "rolled back a transaction left open by its guest")
                    }
                    outcome => {
                        let why = match outcome {
                            Ok(Err(e)) => e,
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
