//! Test guest: streams the request body back (`/echo`), reads it whole first (`/collect`),
//! or answers after a pause (`/slow?ms=N`): for streaming, body-limit and shutdown tests.

use hostel_guest::bindings::wasi::clocks::monotonic_clock;
use hostel_guest::{Request, Response};

fn echo(req: Request) -> Response {
    if req.path().ends_with("/slow") {
        let ms: u64 = req
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        monotonic_clock::subscribe_duration(ms * 1_000_000).block();
        return Response::text(200, format!("slept {ms} ms\n"));
    }
    if req.path().ends_with("/collect") {
        let mut req = req;
        return match req.body_bytes() {
            Ok(body) => Response::text(200, format!("{} bytes\n", body.len())),
            Err(e) => Response::text(400, format!("cannot read the body: {e}\n")),
        };
    }
    let mut body = req.into_body();
    Response::new(200)
        .header("content-type", "application/octet-stream")
        .stream(move |out| std::io::copy(&mut body, out).map(|_| ()))
}

hostel_guest::http_handler!(echo);
