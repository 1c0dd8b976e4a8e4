//! The smallest Hostel app as a WASI 0.3 service: answers every request with a greeting.

use hostel_service::{Request, Response};

async fn hello(req: Request) -> Response {
    Response::text(
        200,
        format!("Hello from Hostel! You asked for {}\n", req.path()),
    )
}

hostel_service::service!(hello);
