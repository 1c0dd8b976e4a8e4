//! PostgreSQL through a pool the host holds (`hostel:host/postgres`).
//!
//! ```ignore
//! use hostel_guest::pg::Connection;
//!
//! let db = Connection::open("db")?;
//! db.execute("INSERT INTO notes (body) VALUES ($1)", &[&"hello"])?;
//! for row in db.query("SELECT id, body FROM notes WHERE id > $1", &[&0_i64])? {
//!     let id: i64 = row.get("id")?;
//!     let body: Option<String> = row.get("body")?;
//! }
//!
//! let tx = db.begin()?;
//! tx.execute("UPDATE notes SET body = upper(body)", &[])?;
//! tx.commit()?; // dropped without commit: rolled back by the host
//! ```
//!
//! The guest never holds a connection: each statement borrows one from the host's pool, and a
//! transaction holds one from `begin` until `commit`, `rollback` or drop. Parameters are `$1`,
//! `$2`, … and convert to the types the statement takes where that is lossless (an `i64` fills
//! an `int4` if it fits). Columns of other types than those of [`Value`] must be cast in SQL,
//! e.g. `price::text`.

use crate::bindings::hostel::host::postgres as wit;

mod values;

pub use values::*;
use values::{rows, values};

/// A pool granted to this app, by its name in the host config.
pub struct Connection(wit::Connection);

impl Connection {
    pub fn open(name: &str) -> Result<Connection, Error> {
        Ok(Connection(wit::Connection::open(name)?))
    }

    /// Runs a statement that returns rows.
    pub fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, Error> {
        rows(self.0.query(sql, &values(params)))
    }

    /// The first row, if any.
    pub fn query_opt(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Option<Row>, Error> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs a statement; the number of rows it affected.
    pub fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, Error> {
        Ok(self.0.execute(sql, &values(params))?)
    }

    /// Starts a transaction on a connection of its own.
    pub fn begin(&self) -> Result<Transaction, Error> {
        Ok(Transaction(self.0.begin()?))
    }
}

/// An open transaction. Dropping it without [`commit`](Transaction::commit) rolls it back.
pub struct Transaction(wit::Transaction);

impl Transaction {
    pub fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, Error> {
        rows(self.0.query(sql, &values(params)))
    }

    pub fn query_opt(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Option<Row>, Error> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    pub fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, Error> {
        Ok(self.0.execute(sql, &values(params))?)
    }

    pub fn commit(self) -> Result<(), Error> {
        Ok(self.0.commit()?)
    }

    pub fn rollback(self) -> Result<(), Error> {
        Ok(self.0.rollback()?)
    }
}
