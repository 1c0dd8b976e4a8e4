//! Key-value for the tests, on the store `default`.
//!
//! Compare-and-swap: a request to any path but those below appends one `x` to the value at
//! `log` with `Bucket::update` (CAS, retried on conflict) and answers its length and how many
//! tries it took. Concurrent requests must leave exactly one `x` each: no update lost.
//!
//! Any key, as the body of a POST (so that it may hold anything, '.' and '*' and Unicode
//! too): `/set` stores the key as its own value, `/get` answers the value (404: absent),
//! `/delete` deletes it; `GET /keys` lists every key, each hex-encoded on a line of its own.

use hostel_guest::kv::Bucket;
use hostel_guest::{Request, Response};

fn handle(mut req: Request) -> Response {
    let bucket = match Bucket::open("default") {
        Ok(bucket) => bucket,
        Err(e) => return Response::text(500, format!("cannot open the store: {e:?}\n")),
    };
    let path = req.path().to_string();
    let mut key = || match req.body_text() {
        Ok(key) => Ok(key),
        Err(e) => Err(Response::text(400, format!("the key is not UTF-8: {e}\n"))),
    };
    let stored = |outcome: Result<(), _>| match outcome {
        Ok(()) => Response::text(200, "ok\n"),
        Err(e) => Response::text(500, format!("store error: {e:?}\n")),
    };
    match path.as_str() {
        "/set" => match key() {
            Ok(key) => stored(bucket.set(&key, key.as_bytes())),
            Err(refused) => refused,
        },
        "/delete" => match key() {
            Ok(key) => stored(bucket.delete(&key)),
            Err(refused) => refused,
        },
        "/get" => match key().map(|key| bucket.get(&key)) {
            Ok(Ok(Some(value))) => Response::new(200).body(value),
            Ok(Ok(None)) => Response::text(404, "absent\n"),
            Ok(Err(e)) => Response::text(500, format!("store error: {e:?}\n")),
            Err(refused) => refused,
        },
        "/keys" => match bucket.keys() {
            Ok(keys) => {
                let lines: String = keys.iter().map(|key| format!("{}\n", hex(key))).collect();
                Response::text(200, lines)
            }
            Err(e) => Response::text(500, format!("store error: {e:?}\n")),
        },
        _ => append(&bucket),
    }
}

fn append(bucket: &Bucket) -> Response {
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

fn hex(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

hostel_guest::http_handler!(handle);
