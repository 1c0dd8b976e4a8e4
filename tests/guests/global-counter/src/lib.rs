//! Test guest: counts requests in a global. With a fresh instance per request it always
//! answers 1; anything else means instances are being reused.

use hostel_guest::{Request, Response};
use std::sync::atomic::{AtomicU64, Ordering};

static SEEN: AtomicU64 = AtomicU64::new(0);

fn count(_req: Request) -> Response {
    let n = SEEN.fetch_add(1, Ordering::Relaxed) + 1;
    Response::text(200, n.to_string())
}

hostel_guest::http_handler!(count);
