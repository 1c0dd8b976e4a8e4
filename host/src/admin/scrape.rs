//! `GET /metrics`: the host's metrics for Prometheus, on the admin listener and, when
//! `[metrics] listen` is set, on a listener of its own. A scrape needs the operator's token
//! unless `metrics.open` is set: the series name every tenant and app.

use super::auth::{Principal, Tokens};
use crate::Host;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::sync::Arc;

pub struct Scrape {
    host: Arc<Host>,
    /// `None`: no `[admin]` section; then scrapes are open (the config checked it).
    tokens: Option<Arc<Tokens>>,
    open: bool,
}

impl Scrape {
    pub fn new(host: Arc<Host>, tokens: Option<Arc<Tokens>>, open: bool) -> Scrape {
        Scrape { host, tokens, open }
    }

    /// Answers a request for `/metrics` (anything else is 404).
    pub async fn handle<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        if request.uri().path() != "/metrics" {
            return text(
                StatusCode::NOT_FOUND,
                "this listener serves GET /metrics only\n",
            );
        }
        if request.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET /metrics\n");
        }
        let authorization = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let operator = self
            .tokens
            .as_ref()
            .and_then(|tokens| tokens.identify(authorization))
            == Some(Principal::Operator);
        if !self.open && !operator {
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                "metrics need the operator's admin token: `Authorization: Bearer TOKEN` (or set \
                 `metrics.open = true`)\n",
            );
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            return response;
        }
        // Thousands of series take a few milliseconds: off the request threads.
        let metrics = self.host.metrics().clone();
        let Ok(exposition) = tokio::task::spawn_blocking(move || metrics.render()).await else {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering metrics failed\n",
            );
        };
        let mut response = Response::new(Full::new(Bytes::from(exposition)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        response
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
