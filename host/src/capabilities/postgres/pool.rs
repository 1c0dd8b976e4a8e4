//! One PostgreSQL login's pool (deadpool-postgres) and the lease a guest's statement or
//! transaction holds on one of its connections.
//!
//! A lease goes back to the pool clean or not at all: after a statement or a transaction the
//! session is reset ([`hygiene`]); one dropped inside a transaction is rolled back and reset
//! first; one dropped mid-statement (the request timed out) has its statement cancelled and
//! its connection closed.
//!
//! Statements are sent in one round trip each, prepared unnamed with the parameter types the
//! server gave when the pool first saw the same SQL (its [`Shape`], kept in a bounded cache):
//! nothing stays prepared on the server past the statement, so the reset can drop everything.

use super::hygiene::{self, Context as Where};
use super::server::{self, Server};
use super::tenants::Provisioner;
use super::v0_1::hostel::host::postgres::{DbError, Error, Rows, Value};
use super::values::{self, Decoded, Shape};
use crate::capabilities::servers::Metered;
use crate::capabilities::servers::{PoolConfig, build_deadpool};
use crate::metrics::{Metrics, PoolClock, PoolGauges, PoolMeter, PoolTimer};
use crate::secrets::redact_text;
use anyhow::{Result, anyhow};
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, TimeoutType};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

type Pool = deadpool::managed::Pool<Metered<Manager>>;
type Object = deadpool::managed::Object<Metered<Manager>>;
type PoolError = deadpool::managed::PoolError<tokio_postgres::Error>;

/// SQL texts whose shape a pool remembers. Bounded, so that a guest sending endless distinct
/// SQL costs itself a prepare per statement, not the host memory.
const SHAPES: NonZeroUsize = NonZeroUsize::new(512).expect("not zero");

pub struct PostgresPool {
    /// The pool's name in the config, and the tenant for a per-tenant login.
    name: String,
    /// The shapes of statements this login ran, by SQL text.
    shapes: Mutex<lru::LruCache<String, Arc<Shape>>>,
    address: String,
    pool: Pool,
    tls: MakeRustlsConnect,
    acquire_timeout: Duration,
    idle_timeout: Duration,
    /// For a tenant's own login: made (or repaired) before its first connection.
    provisioning: Option<Provisioning>,
    meter: PoolMeter,
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
    pub fn new(
        name: &str,
        server: Server,
        config: &PoolConfig,
        metrics: &Arc<Metrics>,
    ) -> Result<Arc<PostgresPool>> {
        Self::build(name, server, config, None, metrics)
    }

    /// The pool of `tenant`'s own login, provisioned by `provisioner` before first use.
    pub fn for_tenant(
        name: &str,
        tenant: &str,
        provisioner: Arc<Provisioner>,
        config: &PoolConfig,
        metrics: &Arc<Metrics>,
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
            metrics,
        )
    }

    fn build(
        name: &str,
        server: Server,
        config: &PoolConfig,
        provisioning: Option<Provisioning>,
        metrics: &Arc<Metrics>,
    ) -> Result<Arc<PostgresPool>> {
        let address = server.address();
        // `Fast` only checks the socket is open: a lease never comes back dirty (see `Lease`'s
        // drop and `hygiene`).
        let manager = Manager::from_config(
            server.login,
            server.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let meter = metrics.pool(name);
        let pool = build_deadpool(manager, config, &meter)
            .map_err(|e| anyhow!("cannot create PostgreSQL pool {name:?} ({address}): {e}"))?;
        let pool = Arc::new(PostgresPool {
            name: name.to_string(),
            shapes: Mutex::new(lru::LruCache::new(SHAPES)),
            address,
            pool,
            tls: server.tls,
            acquire_timeout: config.acquire_timeout,
            idle_timeout: config.idle_timeout,
            provisioning,
            meter,
        });
        let gauges: Arc<dyn PoolGauges> = pool.clone();
        metrics.watch_pool(&pool.meter, Arc::downgrade(&gauges));
        Ok(pool)
    }

    /// A connection of this pool until the lease is dropped; waits up to the acquire timeout
    /// for one to come free (or to be opened).
    /// The lease's life, waiting included, is timed on `clock`.
    pub async fn lease(self: &Arc<Self>, clock: &PoolClock) -> Result<Lease, Error> {
        let held = clock.start();
        self.ensure_provisioned().await?;
        let asked = std::time::Instant::now();
        let got = self.pool.get().await;
        self.meter.waited(asked.elapsed());
        let conn = match got {
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
            _held: held,
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
        self.meter.failed();
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
        Error::Unavailable(redact_text(&format!(
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

    /// Makes sure the server answers, provisioning a tenant's login if need be; warns when a
    /// dedicated login holds rights no tenant should have.
    pub async fn check(self: &Arc<Self>) -> Result<()> {
        let unbilled = PoolClock::default();
        let lease = self
            .lease(&unbilled)
            .await
            .map_err(|e| anyhow!(describe(&e)))?;
        let conn = lease
            .conn
            .as_ref()
            .expect("a live lease has its connection");
        let rights = conn
            .query_one(
                "SELECT rolsuper OR rolcreaterole OR rolbypassrls OR rolreplication \
                 FROM pg_catalog.pg_roles WHERE rolname = current_user",
                &[],
            )
            .await?;
        if self.provisioning.is_none() && rights.get::<_, bool>(0) {
            tracing::warn!(
                pool = %self.name,
                address = %self.address,
                "this pool's login is a superuser or has CREATEROLE, BYPASSRLS or REPLICATION: \
                 the tenant granted it can reach every database on the server (other tenants' \
                 too) and, as superuser, run programs on it. Give the pool a login with only \
                 the rights its tenant needs, or use admin_url"
            );
        }
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

impl PoolGauges for PostgresPool {
    fn connections(&self) -> (u64, u64) {
        let status = self.pool.status();
        let idle = status.available as u64;
        ((status.size as u64).saturating_sub(idle), idle)
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
    /// Dropped after the connection has gone back: its whole life counts as pool time.
    _held: PoolTimer,
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
    /// One statement on its own (autocommit), then the session reset, in one round trip. Its
    /// rows may come to `limit` bytes (the tenant's memory limit).
    pub async fn alone(
        mut self,
        sql: &str,
        params: Vec<Value>,
        want: Want,
        limit: u64,
    ) -> Result<Answer, Error> {
        hygiene::check_statement(sql, Where::Alone)?;
        self.statement(sql, params, want, true, limit).await
    }

    /// One statement inside this lease's transaction.
    pub async fn in_transaction(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        want: Want,
        limit: u64,
    ) -> Result<Answer, Error> {
        hygiene::check_statement(sql, Where::Transaction)?;
        self.statement(sql, params, want, false, limit).await
    }

    /// Runs `sql` with the guest's values converted to its shape; with `then_reset`, the
    /// session reset travels with it.
    async fn statement(
        &mut self,
        sql: &str,
        values: Vec<Value>,
        want: Want,
        then_reset: bool,
        limit: u64,
    ) -> Result<Answer, Error> {
        loop {
            let (shape, fresh) = self.shape(sql).await?;
            let checked = values::params(&shape, &values).and_then(|params| {
                if want == Want::Rows {
                    values::check_columns(&shape)?;
                }
                Ok(params)
            });
            let params = match checked {
                Ok(params) => params,
                // The values may fit what the statement takes now (a column's type changed).
                Err(_) if !fresh => {
                    self.pool.forget(sql);
                    continue;
                }
                Err(why) => return Err(Error::Conversion(why)),
            };
            let conn = self.conn.as_ref().expect("a live lease has its connection");
            self.in_flight = true;
            let tls = &self.pool.tls;
            let ran = run(conn, sql, &shape, &params, want, limit, tls);
            let (outcome, reset) = if then_reset {
                let (outcome, reset) = tokio::join!(ran, hygiene::reset(conn));
                (outcome, Some(reset))
            } else {
                (ran.await, None)
            };
            self.in_flight = false;
            if let Some(reset) = reset {
                self.settle(reset);
            }
            match outcome {
                // The shape the pool remembered no longer fits (the guest changed the table
                // since): ask the server again. Such statements fail before they run, so
                // running one again on its own is safe; inside a transaction, which the failure
                // ended, the guest decides.
                Err(e) if !fresh && is_stale_shape(&e) => {
                    self.pool.forget(sql);
                    if !then_reset || self.dirty {
                        return Err(self.pool.failed(e));
                    }
                }
                outcome => {
                    let ran = outcome.map_err(|e| self.pool.failed(e))?;
                    return decode(ran, &shape, &self.pool, sql, limit);
                }
            }
        }
    }

    /// What `sql` takes and returns: remembered by the pool, else asked of the server (one
    /// round trip, the statement closed again); `true` when just asked.
    async fn shape(&mut self, sql: &str) -> Result<(Arc<Shape>, bool), Error> {
        if let Some(shape) = self.pool.remembered(sql) {
            return Ok((shape, false));
        }
        let conn = self.conn.as_ref().expect("a live lease has its connection");
        self.in_flight = true;
        let statement = conn.prepare(sql).await;
        self.in_flight = false;
        let shape = Arc::new(Shape::of(&statement.map_err(|e| self.pool.failed(e))?));
        self.pool.remember(sql, shape.clone());
        Ok((shape, true))
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
}

impl PostgresPool {
    fn remembered(&self, sql: &str) -> Option<Arc<Shape>> {
        self.shapes
            .lock()
            .expect("shape cache lock")
            .get(sql)
            .cloned()
    }

    fn remember(&self, sql: &str, shape: Arc<Shape>) {
        self.shapes
            .lock()
            .expect("shape cache lock")
            .put(sql.to_string(), shape);
    }

    fn forget(&self, sql: &str) {
        self.shapes.lock().expect("shape cache lock").pop(sql);
    }
}

/// Whether a statement failed because the parameter types it was sent with no longer fit
/// (a column's type changed since the pool learnt them).
fn is_stale_shape(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::DATATYPE_MISMATCH) | Some(&SqlState::UNDEFINED_FUNCTION)
    )
}

enum Ran {
    Rows(Vec<Row>),
    Affected(u64),
    /// The rows came to more than the limit: reading stopped, the statement was cancelled.
    TooLarge,
}

/// Sends the statement unnamed with the shape's parameter types: one round trip. Rows are
/// read as they arrive, up to `limit` bytes: more than the guest could take in (its memory
/// limit) is not held by the host either.
async fn run(
    conn: &Object,
    sql: &str,
    shape: &Shape,
    params: &[values::Param<'_>],
    want: Want,
    limit: u64,
    tls: &MakeRustlsConnect,
) -> Result<Ran, tokio_postgres::Error> {
    use futures_util::TryStreamExt;
    let typed = params
        .iter()
        .zip(&shape.params)
        .map(|(p, ty)| (p as &(dyn ToSql + Sync), ty.clone()));
    if want == Want::Affected {
        let typed: Vec<_> = typed.collect();
        return conn.execute_typed(sql, &typed).await.map(Ran::Affected);
    }
    let mut stream = std::pin::pin!(conn.query_typed_raw(sql, typed).await?);
    let (mut rows, mut bytes) = (Vec::new(), 0u64);
    while let Some(row) = stream.try_next().await? {
        bytes += values::size_of(&row);
        if bytes > limit {
            // Stop the server producing what nobody will read; the reset behind it waits.
            let (cancel, tls) = (conn.cancel_token(), tls.clone());
            tokio::spawn(async move {
                if let Err(e) = cancel.cancel_query(tls).await {
                    tracing::warn!("could not cancel a statement whose result was too large: {e}");
                }
            });
            return Ok(Ran::TooLarge);
        }
        rows.push(row);
    }
    Ok(Ran::Rows(rows))
}

/// The rows as the guest gets them, read by the types the server sent them with. A table
/// changed since the pool learnt the statement's shape has its new shape remembered.
fn decode(
    ran: Ran,
    shape: &Arc<Shape>,
    pool: &PostgresPool,
    sql: &str,
    limit: u64,
) -> Result<Answer, Error> {
    let rows = match ran {
        Ran::Affected(n) => return Ok(Answer::Affected(n)),
        Ran::Rows(rows) => rows,
        Ran::TooLarge => {
            return Err(Error::Db(DbError {
                // program_limit_exceeded
                code: "54000".into(),
                message: format!(
                    "the result is larger than {limit} bytes, the tenant's memory limit"
                ),
                detail: Some(
                    "refused by the host: fetch it in parts (LIMIT and OFFSET, or a cursor in a \
                     transaction)"
                        .into(),
                ),
            }));
        }
    };
    let shape = match rows.first() {
        Some(row) if !same_columns(row, shape) => {
            let actual = Arc::new(Shape {
                params: shape.params.clone(),
                columns: row
                    .columns()
                    .iter()
                    .map(|c| (c.name().to_string(), c.type_().clone()))
                    .collect(),
            });
            pool.remember(sql, actual.clone());
            actual
        }
        _ => shape.clone(),
    };
    let rows = rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.try_get::<_, Decoded>(i).map(|d| d.0).map_err(|e| {
                        Error::Conversion(format!("column {:?}: {e}", row.columns()[i].name()))
                    })
                })
                .collect()
        })
        .collect::<Result<_, _>>()?;
    Ok(Answer::Rows(Rows {
        columns: values::columns(&shape),
        rows,
    }))
}

fn same_columns(row: &Row, shape: &Shape) -> bool {
    row.columns().len() == shape.columns.len()
        && row
            .columns()
            .iter()
            .zip(&shape.columns)
            .all(|(c, (name, ty))| c.name() == name && c.type_() == ty)
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
