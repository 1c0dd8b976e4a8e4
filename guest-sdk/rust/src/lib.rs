//! Write Hostel HTTP handlers in Rust.
//!
//! ```ignore
//! use hostel_guest::{Request, Response};
//!
//! fn hello(req: Request) -> Response {
//!     Response::text(200, format!("hello from {}\n", req.path()))
//! }
//!
//! hostel_guest::http_handler!(hello);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release`: the output is a component.
//!
//! The handler is synchronous: bodies are read and written through blocking `std::io::Read`
//! and `std::io::Write`, which suits a sandbox that lives for one request. Bindings come from
//! `wit-bindgen` over the repository's `wit/` folder, so host interfaces added there appear
//! here without another dependency.

extern crate self as hostel_guest;

pub mod config;
pub mod http;
pub mod kv;
pub mod outbound;
pub mod pg;
pub mod redis;

pub use http::{BodyReader, BodyWriter, IntoResponse, Request, Response};

/// The raw WIT bindings (`wasi:*` and `hostel:host`), for what the friendly API does not cover.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "hostel:host/handler",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "hostel_guest::bindings",
    });
}

/// `hostel:host` 0.1.0, whose types the two SDK editions share (`redis/command.rs`,
/// `pg/values.rs` are compiled into both).
pub(crate) mod bindings_0_1 {
    pub use crate::bindings::hostel::host::*;
}

/// Exports `handler` (a `fn(Request) -> impl IntoResponse`) as the component's
/// `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! http_handler {
    ($handler:path) => {
        struct __HostelHttpHandler;

        impl $crate::bindings::exports::wasi::http::incoming_handler::Guest for __HostelHttpHandler {
            fn handle(
                request: $crate::bindings::wasi::http::types::IncomingRequest,
                response_out: $crate::bindings::wasi::http::types::ResponseOutparam,
            ) {
                $crate::http::serve(request, response_out, $handler);
            }
        }

        $crate::bindings::export!(__HostelHttpHandler with_types_in $crate::bindings);
    };
}
