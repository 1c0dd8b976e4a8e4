//! The Redis hit counter (`components/redis-counter`) as a WASI 0.3 service: every GET adds
//! `step` (the tenant's `step` variable, default 1) to the count of its path (INCRBY on the
//! pool's shared connection, awaited) and answers the new count; `?peek` answers without
//! counting; DELETE resets. A Redis failure is a 503 that says so, not a crash.

use hostel_service::redis::{Error, Redis};
use hostel_service::{Request, Response};

async fn redis_counter(req: Request) -> Response {
    let key = format!("hits:{}", req.path());
    // The tenant's `step` variable (wasi:config), 1 without one.
    let step = hostel_service::config::get_parsed("step").unwrap_or(1);
    let outcome = match Redis::open("cache") {
        Err(e) => Err(e),
        Ok(redis) => match (req.method(), req.query()) {
            ("GET", Some("peek")) => redis
                .get_string(&key)
                .await
                .map(|v| Some(v.unwrap_or_else(|| "0".into()))),
            ("GET", _) => redis.incr(&key, step).await.map(|n| Some(n.to_string())),
            ("DELETE", _) => redis.del(&[&key]).await.map(|_| Some("0".into())),
            _ => Ok(None),
        },
    };
    match outcome {
        Ok(Some(count)) => Response::text(200, format!("{count}\n")),
        Ok(None) => Response::text(405, "use GET or DELETE\n"),
        Err(Error::Unavailable(why)) => Response::text(503, format!("Redis unavailable: {why}\n")),
        Err(e) => Response::text(500, format!("Redis error: {e:?}\n")),
    }
}

hostel_service::service!(redis_counter);
