//! Write Hostel services for WASI 0.3 in Rust: `async fn` handlers, the host's pools as async
//! calls a handler may await several of at once.
//!
//! ```ignore
//! use hostel_service::{Request, Response};
//!
//! async fn hello(req: Request) -> Response {
//!     Response::text(200, format!("hello from {}\n", req.path()))
//! }
//!
//! hostel_service::service!(hello);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release`: the output is a WASI 0.3
//! `wasi:http/service` component (Rust has no `wasm32-wasip3` target yet; the exports and
//! imports make it one). `hostel check` names it a WASI 0.3 service.
//!
//! WASI 0.3 itself comes from the [`wasip3`] crate (re-exported, for what the friendly API does
//! not cover: streamed bodies, trailers, sockets); Hostel's interfaces
//! (`hostel:host/redis@0.2.0`, `hostel:host/postgres@0.2.0`, `wasi:keyvalue`, `wasi:config`)
//! from `wit-bindgen` over the repository's `wit/` folder, on the same async runtime. Keys,
//! values, commands, rows and their conversions are the WASI 0.2 SDK's (`hostel-guest`), the
//! same source files.

extern crate self as hostel_service;

#[path = "../../rust/src/config.rs"]
pub mod config;
pub mod http;
#[path = "../../rust/src/kv.rs"]
pub mod kv;
pub mod outbound;
pub mod pg;
pub mod redis;

pub use http::{BodyWriter, IntoResponse, Request, Response};
pub use wasip3;
/// Runs a task of the guest's own beside the handler (a body written after the answer,
/// work after the response); the host keeps the sandbox until the last task ends, within the
/// request's deadline.
pub use wasip3::wit_bindgen::spawn_local as spawn;

/// The raw WIT bindings of Hostel's interfaces, for what the friendly API does not cover.
pub mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit", "../../wit/service"],
        world: "hostel:host/imports@0.2.0",
        generate_all,
        default_bindings_module: "hostel_service::bindings",
    });
}

/// `hostel:host` 0.1.0, whose types the two SDK editions share.
pub(crate) mod bindings_0_1 {
    pub use crate::bindings::hostel::host0_1_0::*;
}

/// Exports `handler` (an `async fn(Request) -> impl IntoResponse`) as the component's
/// `wasi:http/handler@0.3`.
#[macro_export]
macro_rules! service {
    ($handler:path) => {
        struct __HostelService;

        impl $crate::wasip3::exports::http::handler::Guest for __HostelService {
            async fn handle(
                request: $crate::wasip3::http::types::Request,
            ) -> Result<$crate::wasip3::http::types::Response, $crate::wasip3::http::types::ErrorCode>
            {
                Ok($crate::http::serve(request, $handler).await)
            }
        }

        $crate::wasip3::http::service::export!(__HostelService with_types_in $crate::wasip3);
    };
}
