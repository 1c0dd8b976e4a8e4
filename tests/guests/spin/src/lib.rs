//! Test guest: never returns. The host must stop it at the deadline (504) and keep serving.

use hostel_guest::{Request, Response};

fn spin(_req: Request) -> Response {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

hostel_guest::http_handler!(spin);
