//! Exercises `hostel:host/redis@0.2.0` and `hostel:host/postgres@0.2.0` from a WASI 0.3 service,
//! one path per behaviour (the last segment), answering text lines the tests compare:
//!
//! - `fanout?KEY`: BLPOP KEY on a leased connection, awaited together with a SQL query whose
//!   answer is then RPUSHed to KEY: the pop gets `42` only if the pool calls ran at once (run
//!   one after the other, the BLPOP would wait out its 10 s and find nothing).
//! - `typed`: several typed commands awaited together, their results in order.
//! - `redis-busy`, `pg-busy`: two calls on one transaction awaited together: one runs, the
//!   other is told the transaction is busy.
//! - `pg`: a transaction's statements and commit, then a query on the pool.
//! - `flood?n=N&size=BYTES`: N SETs of BYTES each through the raw bindings, all started at
//!   once (the guest frees each value once the host has taken it): `ok A refused B`, refused being the calls the host
//!   turned away for holding too much in flight.
//! - `hold?n=N[&then=block|trap]`: leases N Redis connections, then blocks in BLPOP (until
//!   the deadline) or traps.

use futures::join;
use hostel_service::bindings::hostel::host0_2_0::redis as raw;
use hostel_service::pg::{self, Connection};
use hostel_service::redis::{Error, Redis, Value, cmd};
use hostel_service::{Request, Response};

async fn probe(req: Request) -> Response {
    let query = req.query().unwrap_or("").to_string();
    let outcome = match req.path().rsplit('/').next().unwrap_or("") {
        "fanout" => fanout(&query).await,
        "typed" => typed().await,
        "redis-busy" => redis_busy().await,
        "pg-busy" => pg_busy().await,
        "pg" => postgres().await,
        "hold" => hold(&query).await,
        "flood" => flood(&query).await,
        _ => return Response::text(404, "no such probe\n"),
    };
    match outcome {
        Ok(text) => Response::text(200, text),
        // As the WASI 0.2 Redis probe answers a pool out of connections.
        Err(why) if why.starts_with("unavailable: ") => Response::text(503, why),
        Err(why) => Response::text(500, why),
    }
}

fn redis() -> Result<Redis, String> {
    Redis::open("cache").map_err(|e| format!("open cache: {e:?}\n"))
}

fn db() -> Result<Connection, String> {
    Connection::open("db").map_err(|e| format!("open db: {e}\n"))
}

fn shown(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| v.as_text().unwrap_or_else(|| format!("{v:?}")))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn fanout(key: &str) -> Result<String, String> {
    let (redis, db) = (redis()?, db()?);
    let lease = redis.transaction().await.map_err(|e| format!("{e:?}\n"))?;
    let (popped, pushed) = join!(lease.execute(cmd("BLPOP").arg(key).arg(10)), async {
        let row = db
            .query_opt("SELECT 41 + 1 AS n", &[])
            .await
            .map_err(|e| format!("{e}"))?
            .ok_or("no row")?;
        let n: i32 = row.get("n").map_err(|e| format!("{e}"))?;
        redis
            .rpush(key, &[n.to_string()])
            .await
            .map_err(|e| format!("{e:?}"))
    });
    let popped = popped.map_err(|e| format!("BLPOP: {e:?}\n"))?;
    pushed.map_err(|e| format!("push: {e}\n"))?;
    Ok(format!("popped {}\n", shown(&popped)))
}

async fn typed() -> Result<String, String> {
    let redis = redis()?;
    redis
        .set("t:a", "1")
        .await
        .map_err(|e| format!("{e:?}\n"))?;
    let (incr, get, missing, len) = join!(
        redis.incr("t:n", 5),
        redis.get_string("t:a"),
        redis.get("t:missing"),
        redis.rpush("t:list", &["x", "y"]),
    );
    Ok(format!(
        "incr {incr:?}\nget {get:?}\nmissing {missing:?}\nrpush {len:?}\n"
    ))
}

/// `busy` or `ok`, for one of two calls awaited together on one transaction.
fn verdict<T, E: std::fmt::Debug>(outcome: &Result<T, E>) -> String {
    match outcome {
        Ok(_) => "ok".into(),
        Err(e) if format!("{e:?}").contains("busy") => "busy".into(),
        Err(e) => format!("{e:?}"),
    }
}

async fn redis_busy() -> Result<String, String> {
    let redis = redis()?;
    let lease = redis.transaction().await.map_err(|e| format!("{e:?}\n"))?;
    let (first, second) = join!(
        lease.execute(cmd("BLPOP").arg("busy:nothing").arg(1)),
        lease.execute(cmd("GET").arg("busy:x")),
    );
    let mut verdicts = [verdict(&first), verdict(&second)];
    verdicts.sort();
    // The lease still works once both have returned.
    let after = lease
        .execute(cmd("SET").arg("busy:x").arg("1"))
        .await
        .map(|v| shown(&v))
        .map_err(|e: Error| format!("{e:?}"));
    Ok(format!(
        "{} {}\nafter {after:?}\n",
        verdicts[0], verdicts[1]
    ))
}

async fn pg_busy() -> Result<String, String> {
    let db = db()?;
    let tx = db.begin().await.map_err(|e| format!("{e}\n"))?;
    let (first, second) = join!(
        tx.query("SELECT pg_sleep(0.2)::text AS slept", &[]),
        tx.query("SELECT 1 AS one", &[]),
    );
    let mut verdicts = [verdict(&first), verdict(&second)];
    verdicts.sort();
    let after = tx
        .query_opt("SELECT 2 AS two", &[])
        .await
        .map_err(|e| format!("{e}"))
        .and_then(|row| {
            let row = row.ok_or("no row")?;
            row.get::<i32>("two").map_err(|e| format!("{e}"))
        });
    tx.commit().await.map_err(|e| format!("commit: {e}\n"))?;
    Ok(format!(
        "{} {}\nafter {after:?}\n",
        verdicts[0], verdicts[1]
    ))
}

async fn postgres() -> Result<String, String> {
    let db = db()?;
    let fail = |e: pg::Error| format!("{e}\n");
    let tx = db.begin().await.map_err(fail)?;
    tx.execute("CREATE TEMP TABLE notes (body text) ON COMMIT DROP", &[])
        .await
        .map_err(fail)?;
    let inserted = tx
        .execute("INSERT INTO notes VALUES ($1), ($2)", &[&"a", &"b"])
        .await
        .map_err(fail)?;
    let rows = tx
        .query("SELECT body FROM notes ORDER BY body", &[])
        .await
        .map_err(fail)?;
    let bodies: Vec<String> = rows
        .iter()
        .map(|row| row.get::<String>("body").unwrap_or_default())
        .collect();
    tx.commit().await.map_err(fail)?;
    let sum: i64 = db
        .query_opt("SELECT $1::int8 + $2::int8 AS sum", &[&40_i64, &2_i64])
        .await
        .map_err(fail)?
        .ok_or("no row")?
        .get("sum")
        .map_err(fail)?;
    Ok(format!(
        "inserted {inserted}\nbodies {}\nsum {sum}\n",
        bodies.join(",")
    ))
}

/// The value of `name=` in a query string.
fn param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_string)
}

async fn flood(query: &str) -> Result<String, String> {
    let n: usize = param(query, "n").and_then(|n| n.parse().ok()).unwrap_or(1);
    let size: usize = param(query, "size")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    // The raw bindings, as a hostile guest would use them: each value is made when its call
    // starts and handed to the bindings, which free it once the host has taken it.
    let redis = raw::Connection::open("cache").map_err(|e| format!("open cache: {e:?}\n"))?;
    let sets = (0..n).map(|i| {
        let redis = &redis;
        async move {
            redis
                .set(format!("flood:{i}"), vec![b'x'; size], None)
                .await
        }
    });
    let outcomes = futures::future::join_all(sets).await;
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Error::Unavailable(why)) if why.contains("too much in flight")))
        .count();
    let other: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err())
        .filter(|e| !matches!(e, Error::Unavailable(why) if why.contains("too much in flight")))
        .map(|e| format!("{e:?}"))
        .collect();
    Ok(format!(
        "ok {ok} refused {refused}
{}",
        other.join("\n")
    ))
}

async fn hold(query: &str) -> Result<String, String> {
    let param = |name: &str| param(query, name);
    let n: usize = param("n").and_then(|n| n.parse().ok()).unwrap_or(1);
    let redis = redis()?;
    let mut leases = Vec::new();
    for _ in 0..n {
        match redis.transaction().await {
            Ok(lease) => leases.push(lease),
            Err(Error::Unavailable(why)) => return Err(format!("unavailable: {why}\n")),
            Err(e) => return Err(format!("{e:?}\n")),
        }
    }
    match param("then").as_deref() {
        Some("block") => {
            let blocked = leases[0]
                .execute(cmd("BLPOP").arg("hold:never").arg(0))
                .await;
            Ok(format!("unblocked?! {blocked:?}\n"))
        }
        Some("trap") => panic!("trapping with {n} leases held"),
        _ => Ok(format!("held {}\n", leases.len())),
    }
}

hostel_service::service!(probe);
