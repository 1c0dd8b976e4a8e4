//! Test guest: allocates (and touches) memory until it runs out. The host must end it at the
//! tenant's memory limit with a 500, and the next request must get a fresh, small instance.

use hostel_guest::{Request, Response};

fn bomb(_req: Request) -> Response {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xAB; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

hostel_guest::http_handler!(bomb);
