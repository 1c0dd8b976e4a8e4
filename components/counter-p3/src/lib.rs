//! The visit counter (`components/counter`) as a WASI 0.3 service: every GET adds `step` (the
//! tenant's `step` variable, default 1) to the count of its path on the host's key-value store
//! and answers the new count; `?peek` answers without counting; DELETE resets.

use hostel_service::kv::Bucket;
use hostel_service::{Request, Response};

async fn counter(req: Request) -> Response {
    let bucket = match Bucket::open("default") {
        Ok(bucket) => bucket,
        Err(e) => return Response::text(500, format!("cannot open the store: {e:?}\n")),
    };
    let key = format!("visits:{}", req.path());
    // The tenant's `step` variable (wasi:config), 1 without one.
    let step = hostel_service::config::get_parsed("step").unwrap_or(1);
    let result = match (req.method(), req.query()) {
        ("GET", Some("peek")) => bucket.get(&key).map(|v| {
            v.and_then(|bytes| String::from_utf8(bytes).ok())
                .unwrap_or_else(|| "0".into())
        }),
        ("GET", _) => bucket.increment(&key, step).map(|n| n.to_string()),
        ("DELETE", _) => bucket.delete(&key).map(|()| "0".into()),
        _ => return Response::text(405, "use GET or DELETE\n"),
    };
    match result {
        Ok(count) => Response::text(200, format!("{count}\n")),
        Err(e) => Response::text(500, format!("store error: {e:?}\n")),
    }
}

hostel_service::service!(counter);
