//! PostgreSQL through a pool the host holds (`hostel:host/postgres@0.2.0`): every statement is
//! `async`, so a handler can await several at once.
//!
//! ```ignore
//! use hostel_service::pg::Connection;
//!
//! let db = Connection::open("db")?;
//! let (notes, users) = futures::join!(
//!     db.query("SELECT id, body FROM notes", &[]),
//!     db.query("SELECT name FROM users WHERE id = $1", &[&7_i64]),
//! );
//! let tx = db.begin().await?;
//! tx.execute("UPDATE notes SET body = upper(body)", &[]).await?;
//! tx.commit().await?; // dropped without commit: rolled back by the host
//! ```
//!
//! Each statement on a [`Connection`] borrows a pooled connection of its own, so statements
//! awaited together run at once; a [`Transaction`] holds one connection and runs one
//! statement at a time. Parameters, rows, values and errors are the WASI 0.2 SDK's.

use crate::bindings::hostel::host0_2_0::postgres as wit;

#[path = "../../rust/src/pg/values.rs"]
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
    pub async fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, Error> {
        rows(self.0.query(sql.to_string(), values(params)).await)
    }

    /// The first row, if any.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
    ) -> Result<Option<Row>, Error> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// Runs a statement; the number of rows it affected.
    pub async fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, Error> {
        Ok(self.0.execute(sql.to_string(), values(params)).await?)
    }

    /// Starts a transaction on a connection of its own.
    pub async fn begin(&self) -> Result<Transaction, Error> {
        Ok(Transaction(self.0.begin().await?))
    }
}

/// An open transaction. Dropping it without [`commit`](Transaction::commit) rolls it back.
pub struct Transaction(wit::Transaction);

impl Transaction {
    pub async fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, Error> {
        rows(self.0.query(sql.to_string(), values(params)).await)
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
    ) -> Result<Option<Row>, Error> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub async fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, Error> {
        Ok(self.0.execute(sql.to_string(), values(params)).await?)
    }

    pub async fn commit(self) -> Result<(), Error> {
        Ok(self.0.commit().await?)
    }

    pub async fn rollback(self) -> Result<(), Error> {
        Ok(self.0.rollback().await?)
    }
}
