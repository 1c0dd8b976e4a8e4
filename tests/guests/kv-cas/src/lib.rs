//! Compare-and-swap for the tests: every request appends one `x` to the value at `log` with
//! `Bucket::update` (CAS, retried on conflict) and answers how many tries it took. Concurrent
//! requests must leave exactly one `x` each: no update lost.

use hostel_guest::kv::Bucket;
use hostel_guest::{Request, Response};

fn append(_req: Request) -> Response {
    let bucket = match Bucket::open("default") {
        Ok(bucket) => bucket,
        Err(e) => return Response::text(500, format!("cannot open the store: {e:?}\n")),
    };
    let mut tries = 0;
    let outcome = bucket.update("log", |old| {
        tries += 1;
        [old.unwrap_or_default(), b"x"].concat()
    });
    match outcome {
        Ok(value) => Response::text(200, format!("{} {tries}\n", value.len())),
        Err(e) => Response::text(500, format!("store error: {e:?}\n")),
    }
}

hostel_guest::http_handler!(append);
