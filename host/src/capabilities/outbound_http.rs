//! `wasi:http/outgoing-handler`: guests call out only to the hosts their tenant was granted.
//!
//! The check happens in the `WasiHttpHooks::send_request` override, before any connection is
//! made, so a denied call fails at once with `HTTP-request-denied` instead of hanging.

use crate::config::OutboundRule;
use std::sync::Arc;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The per-request hooks: the tenant's outbound grants.
pub struct OutboundHttp {
    rules: Arc<[OutboundRule]>,
}

impl OutboundHttp {
    pub fn new(rules: Arc<[OutboundRule]>) -> OutboundHttp {
        OutboundHttp { rules }
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else {
            return false;
        };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        self.rules
            .iter()
            .any(|rule| rule.allows(scheme, host, port))
    }
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        if !self.allows(request.uri()) {
            tracing::warn!(uri = %request.uri(), "outbound request denied: host not granted to this tenant");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}
