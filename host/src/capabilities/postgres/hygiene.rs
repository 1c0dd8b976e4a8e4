//! Connections come back as new ones: after every borrow, whatever SQL the guest sent, the
//! host puts the session back in the state a fresh connection has, so no request changes what
//! another's statements do and no acknowledged write is lost.
//!
//! Two parts:
//! - statements that start or end transactions are refused outside the transaction API (they
//!   would leave the pooled connection inside a transaction, where the next borrower's writes
//!   would be answered "ok" and later rolled back) and inside it (they would end the host's
//!   transaction behind its back) — a clear error before anything is sent;
//! - after the borrow, pipelined behind the guest's last statement (no extra round trip), the
//!   host sends `DISCARD ALL`: session and role back to the login, every setting reset,
//!   cursors closed, LISTEN ended, advisory locks released, prepared statements, temporary
//!   objects and sequence state dropped. The host prepares nothing that outlives a statement
//!   (see [`super::pool`]), so there is nothing of its own to keep. `DISCARD ALL` refuses to
//!   run inside a transaction block: a transaction still open — however it was opened — shows
//!   as that refusal, and is rolled back before the session is reset again. A connection that
//!   cannot be reset is closed.

use super::v0_1::hostel::host::postgres::{DbError, Error};
use tokio_postgres::Client;

/// The state of a fresh session, in one statement (PostgreSQL's own definition of it).
const RESET: &str = "DISCARD ALL";

/// Why a connection could not be reset (it is then closed, never reused).
#[derive(Debug)]
pub struct Unclean(pub String);

/// Resets the session on `client`. Poll it together with the statement it follows (`join!`),
/// so that it travels in the same round trip.
pub async fn reset(client: &Client) -> Result<(), Unclean> {
    let Err(refused) = client.batch_execute(RESET).await else {
        return Ok(());
    };
    if refused.as_db_error().is_none() {
        return Err(Unclean(format!("cannot reset the session: {refused}")));
    }
    // Inside a transaction block (open, or failed): end it, then reset.
    client
        .batch_execute("ROLLBACK")
        .await
        .map_err(|e| Unclean(format!("cannot roll back a transaction left open: {e}")))?;
    tracing::warn!("rolled back a transaction a statement left open on a pooled connection");
    client
        .batch_execute(RESET)
        .await
        .map_err(|e| Unclean(format!("cannot reset the session after ROLLBACK: {e}")))
}

/// Where a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// On its own (autocommit).
    Alone,
    /// Inside a transaction of the transaction API.
    Transaction,
}

/// Refuses statements that start or end a transaction where they would break the host's
/// bookkeeping. Savepoints are the guest's to use inside a transaction.
pub fn check_statement(sql: &str, context: Context) -> Result<(), Error> {
    let mut words = keywords(sql);
    let Some(first) = words.next() else {
        return Ok(());
    };
    let second = words.next();
    let third = words.next();
    let control = match first.as_str() {
        "BEGIN" | "START" | "COMMIT" | "END" | "ABORT" => true,
        // ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name is a savepoint's.
        "ROLLBACK" => {
            !(second.as_deref() == Some("TO")
                || (matches!(second.as_deref(), Some("WORK" | "TRANSACTION"))
                    && third.as_deref() == Some("TO")))
        }
        "PREPARE" => second.as_deref() == Some("TRANSACTION"),
        _ => false,
    };
    if !control {
        return Ok(());
    }
    let (message, hint) = match context {
        Context::Alone => (
            format!("{first} is not run outside a transaction"),
            "each statement runs on its own pooled connection: use the transaction API \
             (begin, then commit or rollback) to run statements in one transaction",
        ),
        Context::Transaction => (
            format!("{first} is not run inside a transaction"),
            "end the transaction with its commit or rollback call; savepoints (SAVEPOINT, \
             RELEASE, ROLLBACK TO) are allowed",
        ),
    };
    Err(Error::Db(DbError {
        // invalid_transaction_state
        code: "25000".into(),
        message,
        detail: Some(format!("refused by the host: {hint}")),
    }))
}

/// The first words of a statement, upper case, skipping white space and comments (`--` to the
/// end of the line, `/* ... */` nested as PostgreSQL nests them).
fn keywords(sql: &str) -> impl Iterator<Item = String> + '_ {
    let mut rest = sql;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix("--") {
                rest = after.find('\n').map_or("", |i| &after[i..]);
            } else if rest.starts_with("/*") {
                let mut depth = 0usize;
                let mut i = 0;
                let bytes = rest.as_bytes();
                while i < bytes.len() {
                    if bytes[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if bytes[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                rest = rest.get(i..).unwrap_or("");
            } else {
                break;
            }
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        let (word, after) = rest.split_at(end);
        rest = after;
        Some(word.to_ascii_uppercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_control_is_refused_where_it_breaks_the_bookkeeping() {
        for sql in [
            "BEGIN",
            "begin isolation level serializable",
            "  /* a /* nested */ comment */ -- and a line\n START TRANSACTION",
            "COMMIT",
            "end",
            "ROLLBACK",
            "abort",
            "PREPARE TRANSACTION 'x'",
            "COMMIT PREPARED 'x'",
        ] {
            assert!(check_statement(sql, Context::Alone).is_err(), "{sql}");
            assert!(check_statement(sql, Context::Transaction).is_err(), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SAVEPOINT a",
            "ROLLBACK TO SAVEPOINT a",
            "rollback work to a",
            "RELEASE a",
            "PREPARE q AS SELECT 1",
            "DO $$ BEGIN PERFORM 1; END $$",
            "/* BEGIN */ SELECT 1",
            "",
        ] {
            assert!(check_statement(sql, Context::Transaction).is_ok(), "{sql}");
        }
        let Err(Error::Db(e)) = check_statement("BEGIN", Context::Alone) else {
            panic!("a db error");
        };
        assert_eq!(e.code, "25000");
        assert!(e.detail.unwrap().contains("begin"));
    }

    use tokio_postgres::SimpleQueryMessage;

    /// One value of a one-row, one-column query, as text.
    async fn one(client: &Client, sql: &str) -> String {
        let messages = client.simple_query(sql).await.unwrap();
        messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
                _ => None,
            })
            .unwrap()
    }

    #[tokio::test]
    async fn a_session_comes_back_as_a_new_one_whatever_was_left_in_it() {
        let pg = hostel_tests::PostgresServer::start().unwrap();
        pg.psql("CREATE TABLE t (x int); CREATE ROLE lowly; GRANT INSERT, SELECT ON t TO lowly")
            .unwrap();
        let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        for sql in [
            "SET search_path = nowhere",
            "SET client_encoding = 'LATIN1'",
            "PREPARE mine AS SELECT 1",
            "DO $$ BEGIN EXECUTE 'PREPARE \"Sneaky, Quoted\" AS SELECT 2'; END $$",
            "LISTEN chan",
            "CREATE TEMP TABLE tmp (x int)",
            "SELECT pg_advisory_lock(7)",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "SET default_transaction_read_only = on",
            "SET SESSION AUTHORIZATION lowly",
            "SET statement_timeout = 1000",
        ] {
            client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        // An open transaction with a write in it, as a statement could leave.
        client
            .batch_execute("BEGIN READ WRITE; INSERT INTO public.t VALUES (1)")
            .await
            .unwrap();
        reset(&client).await.unwrap();

        assert_eq!(one(&client, "SHOW statement_timeout").await, "0");
        assert_eq!(one(&client, "SHOW search_path").await, "\"$user\", public");
        assert_eq!(one(&client, "SHOW client_encoding").await, "UTF8");
        assert_eq!(
            one(&client, "SHOW default_transaction_read_only").await,
            "off"
        );
        assert_eq!(
            one(&client, "SELECT current_user || ',' || session_user").await,
            "postgres,postgres"
        );
        assert_eq!(
            one(
                &client,
                "SELECT count(*) FROM pg_prepared_statements WHERE from_sql"
            )
            .await,
            "0"
        );
        assert_eq!(
            one(&client, "SELECT count(*) FROM pg_listening_channels()").await,
            "0"
        );
        assert_eq!(one(&client, "SELECT count(*) FROM pg_cursors").await, "0");
        assert_eq!(
            one(
                &client,
                "SELECT count(*) FROM pg_class WHERE relpersistence = 't'"
            )
            .await,
            "0"
        );
        assert_eq!(
            one(&client, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()").await,
            "0"
        );
        // The write of the transaction left open is gone, and the next one commits on its own.
        assert_eq!(pg.count("SELECT count(*) FROM t").unwrap(), 0);
        client
            .execute("INSERT INTO t VALUES (2)", &[])
            .await
            .unwrap();
        assert_eq!(pg.count("SELECT count(*) FROM t").unwrap(), 1);
        // A failed transaction is ended too.
        let _ = client.batch_execute("BEGIN; SELECT 1/0").await;
        reset(&client).await.unwrap();
        assert_eq!(one(&client, "SELECT 1").await, "1");
    }
}
