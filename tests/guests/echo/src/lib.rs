//! Test guest: streams the request body back (`/echo`), reads it whole first (`/collect`),
//! answers after a pause (`/slow?ms=N`), describes the request (`/request`) or answers the
//! value of one of its headers (`/header?NAME`): for streaming, body-limit, shutdown, SDK and
//! trace-context tests.

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
    if req.path().ends_with("/request") {
        // The body first: the parts the SDK fetches lazily must still come after it is consumed.
        let mut req = req;
        let body = req.body_text().unwrap_or_else(|e| format!("<{e}>"));
        let lines = [
            req.method().to_string(),
            req.scheme().unwrap_or("<none>").to_string(),
            req.authority().unwrap_or("<none>").to_string(),
            req.path_with_query().to_string(),
            req.header("x-probe").unwrap_or("<none>").to_string(),
            req.headers().len().to_string(),
            body,
        ];
        return Response::text(200, lines.join("\n"));
    }
    if req.path().ends_with("/header") {
        let name = req.query().unwrap_or("");
        let values: Vec<String> = (req.headers().iter())
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        if values.is_empty() {
            return Response::text(200, "<none>");
        }
        return Response::text(200, values.join("\n"));
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
