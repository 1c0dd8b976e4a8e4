//! A hit counter on the host's Redis pool `cache`: every GET adds `step` (the tenant's `step`
//! variable, default 1) to the count of its path (INCRBY on the pool's shared connection) and
//! answers the new count; `?peek` answers without
//! counting; DELETE resets. A Redis failure is a 503 that says so, not a crash.

use hostel_guest::redis::{Error, Redis};
use hostel_guest::{Request, Response};

fn redis_counter(req: Request) -> Response {
    let key = format!("hits:{}", req.path());
    // The tenant's `step` variable (wasi:config), 1 without one.
    let step = hostel_guest::config::get_parsed("step").unwrap_or(1);
    let outcome = Redis::open("cache").and_then(|redis| match (req.method(), req.query()) {
        ("GET", Some("peek")) => redis
            .get_string(&key)
            .map(|v| Some(v.unwrap_or_else(|| "0".into()))),
        ("GET", _) => redis.incr(&key, step).map(|n| Some(n.to_string())),
        ("DELETE", _) => redis.del(&[&key]).map(|_| Some("0".into())),
        _ => Ok(None),
    });
    match outcome {
        Ok(Some(count)) => Response::text(200, format!("{count}\n")),
        Ok(None) => Response::text(405, "use GET or DELETE\n"),
        Err(Error::Unavailable(why)) => Response::text(503, format!("Redis unavailable: {why}\n")),
        Err(e) => Response::text(500, format!("Redis error: {e:?}\n")),
    }
}

hostel_guest::http_handler!(redis_counter);
