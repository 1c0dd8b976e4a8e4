//! Exercises `hostel:host/redis` for the end-to-end tests: one path per behaviour, each
//! answering plain text lines the tests compare.

use hostel_guest::redis::{Error, Redis, Value, cmd};
use hostel_guest::{Request, Response};
use std::fmt::Write;
use std::time::Duration;

fn probe(req: Request) -> Response {
    let pool = req.header("x-pool").unwrap_or("cache").to_string();
    let redis = match Redis::open(&pool) {
        Ok(redis) => redis,
        Err(e) => return Response::text(500, format!("open: {e:?}\n")),
    };
    // The last path segment picks the probe, wherever the app is mounted.
    let outcome = match req.path().rsplit('/').next().unwrap_or("") {
        "typed" => typed(&redis),
        "execute" => execute(&redis),
        "pipeline" => pipeline(&redis),
        "watch" => watch(&redis),
        "hold" => hold(&redis, req.query().unwrap_or("")),
        "raw" => raw(&redis, req.header("x-command").unwrap_or("")),
        _ => return Response::text(404, "no such probe\n"),
    };
    match outcome {
        Ok(text) => Response::text(200, text),
        Err(Error::Unavailable(why)) => Response::text(503, format!("unavailable: {why}\n")),
        Err(e) => Response::text(500, format!("{e:?}\n")),
    }
}

fn text(bytes: Option<Vec<u8>>) -> String {
    bytes.map_or("nil".into(), |b| String::from_utf8_lossy(&b).into_owned())
}

fn texts(items: Vec<Vec<u8>>) -> Vec<String> {
    items.into_iter().map(|b| text(Some(b))).collect()
}

/// Every typed command, its result on a line.
fn typed(r: &Redis) -> Result<String, Error> {
    let mut out = String::new();
    r.del(&["s", "h", "l", "set", "gone"])?;
    r.set("s", "v1")?;
    writeln!(out, "get {}", text(r.get("s")?)).unwrap();
    writeln!(out, "incr {}", r.incr("n", 5)?).unwrap();
    r.set_expiring("gone", "x", Duration::from_millis(50))?;
    writeln!(out, "exists {}", r.exists(&["s", "gone", "missing"])?).unwrap();
    writeln!(out, "expire {}", r.expire("s", Duration::from_secs(60))?).unwrap();
    writeln!(
        out,
        "hset {} {}",
        r.hset("h", "a", "1")?,
        r.hset("h", "a", "2")?
    )
    .unwrap();
    r.hset("h", "b", "3")?;
    writeln!(out, "hget {}", text(r.hget("h", "a")?)).unwrap();
    let mut all: Vec<String> = r
        .hgetall("h")?
        .into_iter()
        .map(|(f, v)| format!("{f}={}", text(Some(v))))
        .collect();
    all.sort();
    writeln!(out, "hgetall {}", all.join(",")).unwrap();
    writeln!(out, "hdel {}", r.hdel("h", &["a", "zz"])?).unwrap();
    writeln!(out, "rpush {}", r.rpush("l", &["a", "b", "c"])?).unwrap();
    writeln!(out, "lpush {}", r.lpush("l", &["z"])?).unwrap();
    writeln!(out, "lrange {}", texts(r.lrange("l", 0, -1)?).join(",")).unwrap();
    writeln!(
        out,
        "lpop {} rpop {}",
        text(r.lpop("l")?),
        text(r.rpop("l")?)
    )
    .unwrap();
    writeln!(out, "llen {}", r.llen("l")?).unwrap();
    writeln!(out, "sadd {}", r.sadd("set", &["x", "y", "x"])?).unwrap();
    writeln!(out, "srem {}", r.srem("set", &["y"])?).unwrap();
    writeln!(out, "smembers {}", texts(r.smembers("set")?).join(",")).unwrap();
    writeln!(
        out,
        "sismember {} {}",
        r.sismember("set", "x")?,
        r.sismember("set", "y")?
    )
    .unwrap();
    writeln!(out, "publish {}", r.publish("news", "hi")?).unwrap();
    writeln!(out, "del {}", r.del(&["s", "missing"])?).unwrap();
    // A server error is a value: INCR on a hash.
    match r.incr("h", 1) {
        Err(Error::Server(why)) => writeln!(out, "wrongtype {}", why.contains("WRONGTYPE")),
        other => writeln!(out, "wrongtype unexpected {other:?}"),
    }
    .unwrap();
    Ok(out)
}

/// The generic command call: allowed commands are namespaced, others refused.
/// Runs the command in the `x-command` header (words separated by spaces) through the
/// generic call, as a hostile guest would, and answers the reply.
fn raw(r: &Redis, command: &str) -> Result<String, Error> {
    let mut words = command.split(' ');
    let mut command = cmd(words.next().unwrap_or(""));
    for word in words {
        command = command.arg(word);
    }
    Ok(format!("{:?}\n", r.execute(command)?))
}

fn execute(r: &Redis) -> Result<String, Error> {
    let mut out = String::new();
    r.execute(cmd("DEL").arg("board"))?;
    r.execute(
        cmd("ZADD")
            .arg("board")
            .arg(10)
            .arg("alice")
            .arg(20)
            .arg("bob"),
    )?;
    let top = r.execute(cmd("ZRANGE").arg("board").arg(0).arg(-1).arg("WITHSCORES"))?;
    let top: Vec<String> = top.iter().filter_map(Value::as_text).collect();
    writeln!(out, "zrange {}", top.join(",")).unwrap();
    // A blocking pop names the key it popped from: without the host's prefix.
    r.execute(cmd("RPUSH").arg("queue").arg("job"))?;
    // It holds its connection, so not on the one every request shares: in a transaction.
    match r.execute(cmd("BLPOP").arg("queue").arg(1)) {
        Err(Error::Refused(_)) => writeln!(out, "BLPOP refused on the shared connection"),
        other => writeln!(out, "BLPOP NOT refused on the shared connection: {other:?}"),
    }
    .unwrap();
    let popped = r.transaction()?.execute(cmd("BLPOP").arg("queue").arg(1))?;
    let popped: Vec<String> = popped.iter().filter_map(Value::as_text).collect();
    writeln!(out, "blpop {}", popped.join(",")).unwrap();
    for refused in ["KEYS", "FLUSHDB", "SCAN", "EVAL", "CONFIG"] {
        match r.execute(cmd(refused).arg("*")) {
            Err(Error::Refused(_)) => writeln!(out, "{refused} refused"),
            other => writeln!(out, "{refused} NOT refused: {other:?}"),
        }
        .unwrap();
    }
    Ok(out)
}

/// Several commands in one round trip, one failing.
fn pipeline(r: &Redis) -> Result<String, Error> {
    r.del(&["p", "ph"])?;
    r.hset("ph", "f", "v")?;
    let replies = r.pipeline(&[
        cmd("INCR").arg("p"),
        cmd("INCR").arg("ph"),
        cmd("INCRBY").arg("p").arg(10),
        cmd("GET").arg("p"),
    ])?;
    let lines: Vec<String> = replies
        .into_iter()
        .map(|reply| match reply {
            Ok(values) => values
                .iter()
                .filter_map(Value::as_text)
                .collect::<Vec<_>>()
                .join(","),
            Err(Error::Server(_)) => "server-error".into(),
            Err(e) => format!("{e:?}"),
        })
        .collect();
    Ok(format!("{}\n", lines.join(" ")))
}

/// WATCH, a conflicting write from outside the transaction, EXEC: nothing applied; then
/// again without the conflict: applied.
fn watch(r: &Redis) -> Result<String, Error> {
    let mut out = String::new();
    r.set("w", "0")?;
    let tx = r.transaction()?;
    tx.watch(&["w"])?;
    r.set("w", "changed elsewhere")?;
    let outcome = tx.exec(&[cmd("SET").arg("w").arg("from tx")])?;
    writeln!(out, "conflict applied={}", outcome.is_some()).unwrap();
    tx.watch(&["w"])?;
    let current = tx.execute(cmd("GET").arg("w"))?;
    let replies = tx
        .exec(&[cmd("SET").arg("w").arg("from tx"), cmd("INCR").arg("wn")])?
        .expect("no conflict this time");
    writeln!(
        out,
        "second applied=true read={} replies={}",
        current[0].as_text().unwrap_or_default(),
        replies.len()
    )
    .unwrap();
    writeln!(out, "w={}", text(r.get("w")?)).unwrap();
    Ok(out)
}

/// Leases `n` connections (`n=..`), WATCHes a key on each, then ends as told: `then=ok`
/// returns, `then=trap` panics, `then=block` blocks in BLPOP until the request's deadline,
/// `then=wait` waits one second in BLPOP, then writes and reads with the pool again.
fn hold(r: &Redis, query: &str) -> Result<String, Error> {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
            .to_string()
    };
    let n: usize = param("n").parse().unwrap_or(1);
    let mut leases = Vec::new();
    for _ in 0..n {
        let tx = r.transaction()?;
        tx.watch(&["held"])?;
        leases.push(tx);
    }
    match param("then").as_str() {
        "trap" => panic!("trapping while holding {n} leased connections"),
        "wait" => {
            leases[0].execute(cmd("BLPOP").arg("never-pushed").arg(1))?;
            let n = r.incr("waited", 1)?;
            Ok(format!("waited, then counted {n}\n"))
        }
        "block" => {
            leases[0].execute(cmd("BLPOP").arg("never-pushed").arg(0))?;
            unreachable!("BLPOP 0 on an empty list does not return")
        }
        _ => Ok(format!("held {n}\n")),
    }
}

hostel_guest::http_handler!(probe);
