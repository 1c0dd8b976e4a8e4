//! The smallest Hostel app: answers every request with a greeting.

use hostel_guest::{Request, Response};

fn hello(req: Request) -> Response {
    Response::text(
        200,
        format!("Hello from Hostel! You asked for {}\n", req.path()),
    )
}

hostel_guest::http_handler!(hello);
