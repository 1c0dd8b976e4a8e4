// Shared by the `legacy-wasi-*` test guests (included by each): a handler written against raw, older WASI
// bindings (`wasi_bindings` is the crate each guest aliases), to prove the host links guests
// built for earlier wasi:http 0.2.x releases.

use wasi_bindings::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Legacy;

impl wasi_bindings::exports::http::incoming_handler::Guest for Legacy {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("new response has a body");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("new body has a stream");
        stream
            .blocking_write_and_flush(format!("built against wasi {WASI_VERSION}\n").as_bytes())
            .expect("write body");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish body");
    }
}

wasi_bindings::http::proxy::export!(Legacy with_types_in wasi_bindings);
