//! What each way of handing back a pooled PostgreSQL session clean costs, per statement: the
//! server CPU time of the backend (from /proc) and the wall time, for a statement followed by
//! its reset sent in the same round trip, as Hostel sends them.
//!
//! Usage: `pg-reset URL SQL [N]` (the server must run on this machine, to read its CPU time).

use std::time::Instant;
use tokio_postgres::{Client, NoTls};

/// CPU seconds of a process (user + system), from /proc.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the backend's /proc");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// The reset the host sent before settling on DISCARD ALL: a transaction-local probe in a
/// message of its own, then a read of the probe and of the guest's prepared statements, and
/// each part of a fresh session reset apart (keeping the host's named statements).
const PROBE: &str = "SELECT pg_catalog.set_config('hostel.open_transaction', 'yes', true)";
const ITEMISED: &str = "SELECT pg_catalog.current_setting('hostel.open_transaction', true), \
    pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.quote_ident(name) \
    FROM pg_catalog.pg_prepared_statements WHERE from_sql), ','); \
    SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL; CLOSE ALL; UNLISTEN *; \
    SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

async fn measure<F, Fut>(
    client: &Client,
    pid: i32,
    n: u32,
    name: &str,
    alone: f64,
    mut run: F,
) -> f64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..n / 10 {
        run().await;
    }
    let _ = client;
    let (started, cpu) = (Instant::now(), cpu_seconds(pid));
    for _ in 0..n {
        run().await;
    }
    let wall = started.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let server = (cpu_seconds(pid) - cpu) * 1e6 / f64::from(n);
    let over = if alone > 0.0 {
        format!("{:+.0}", server - alone)
    } else {
        "—".into()
    };
    println!("| {name} | {wall:.0} | {server:.0} | {over} |");
    server
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: pg-reset URL SQL [N]");
    let sql = args.next().expect("usage: pg-reset URL SQL [N]");
    let n: u32 = args.next().map_or(20_000, |v| v.parse().expect("a count"));
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let c = &client;
    println!("`{sql}`, {n} times, one connection\n");
    println!(
        "| way | wall µs per statement | server CPU µs | server CPU over the statement alone |"
    );
    println!("|---|---|---|---|");
    let named = client.prepare(&sql).await.unwrap();
    let alone = measure(
        c,
        pid,
        n,
        "statement alone (prepared once, no reset)",
        0.0,
        || async {
            c.query(&named, &[]).await.unwrap();
        },
    )
    .await;
    measure(
        c,
        pid,
        n,
        "prepared once + probe + itemised reset (kept statements)",
        alone,
        || async {
            let (rows, probe, reset) = tokio::join!(
                c.query(&named, &[]),
                c.simple_query(PROBE),
                c.simple_query(ITEMISED)
            );
            rows.unwrap();
            probe.unwrap();
            reset.unwrap();
        },
    )
    .await;
    measure(
        c,
        pid,
        n,
        "prepared once + RESET ALL (settings only: not enough)",
        alone,
        || async {
            let (rows, reset) = tokio::join!(c.query(&named, &[]), c.batch_execute("RESET ALL"));
            rows.unwrap();
            reset.unwrap();
        },
    )
    .await;
    drop(named);
    measure(
        c,
        pid,
        n,
        "unnamed statement + DISCARD ALL (Hostel now)",
        alone,
        || async {
            let (rows, reset) =
                tokio::join!(c.query_typed(&sql, &[]), c.batch_execute("DISCARD ALL"));
            rows.unwrap();
            reset.unwrap();
        },
    )
    .await;
    measure(
        c,
        pid,
        n,
        "prepared again each time + DISCARD ALL",
        alone,
        || async {
            let statement = c.prepare(&sql).await.unwrap();
            let (rows, reset) =
                tokio::join!(c.query(&statement, &[]), c.batch_execute("DISCARD ALL"));
            rows.unwrap();
            reset.unwrap();
        },
    )
    .await;
}
