//! Test guest: panics (a wasm trap). The host must answer 500 with a request id.

use hostel_guest::{Request, Response};

fn panics(req: Request) -> Response {
    panic!("this guest panics on purpose at {}", req.path());
}

hostel_guest::http_handler!(panics);
