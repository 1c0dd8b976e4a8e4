//! The admin API from the command line: `hostel deploy`, `hostel apps`, `hostel remove`.
//! Refusals are explained in words, with what to do next.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where the admin API is and the token to show it.
pub struct AdminClient {
    base: String,
    token: String,
}

impl AdminClient {
    pub fn new(url: &str, token: Option<String>) -> Result<AdminClient> {
        let token = token.filter(|t| !t.is_empty()).context(
            "no admin token: pass --token or set HOSTEL_TOKEN (the operator's token, or your \
             tenant's)",
        )?;
        Ok(AdminClient {
            base: url.trim_end_matches('/').to_string(),
            token,
        })
    }

    pub fn deploy(&self, tenant: &str, app: &str, route: &str, component: &[u8]) -> Result<Value> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("route", route)
            .finish();
        let path = format!("/v1/tenants/{tenant}/apps/{app}?{query}");
        self.call(Method::PUT, &path, Bytes::copy_from_slice(component))
    }

    pub fn apps(&self) -> Result<Value> {
        self.call(Method::GET, "/v1/apps", Bytes::new())
    }

    /// `GET /v1/usage` between `from` and `to` (the API's defaults when absent).
    pub fn usage(&self, from: Option<&str>, to: Option<&str>) -> Result<Value> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(from.map(|f| ("from", f)))
            .extend_pairs(to.map(|t| ("to", t)))
            .finish();
        self.call(Method::GET, &format!("/v1/usage?{query}"), Bytes::new())
    }

    pub fn remove(&self, tenant: &str, app: &str) -> Result<()> {
        self.call(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/apps/{app}"),
            Bytes::new(),
        )
        .map(drop)
    }

    fn call(&self, method: Method, path: &str, body: Bytes) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(body))
            .with_context(|| format!("{url} is not a valid URL (--admin / HOSTEL_ADMIN)"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (status, text) = runtime.block_on(async {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let response = client.request(request).await.with_context(|| {
                format!(
                    "cannot reach the admin API at {}: is `hostel serve` running with an [admin] \
                     section, and is this its address (--admin / HOSTEL_ADMIN)?",
                    self.base
                )
            })?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
        })?;
        let json: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("the admin API answered {status} with: {text}"))?
        };
        if status.is_success() {
            return Ok(json);
        }
        let reason = json["error"].as_str().unwrap_or(text.trim());
        match status {
            StatusCode::UNAUTHORIZED => bail!(
                "the admin API refused the token (401 Unauthorized): pass the operator's or your \
                 tenant's admin token with --token or HOSTEL_TOKEN"
            ),
            StatusCode::FORBIDDEN => bail!(
                "this token may not do that (403 Forbidden): {reason}. A tenant's token manages \
                 only that tenant's apps"
            ),
            StatusCode::BAD_REQUEST => bail!("the host refused it (400 Bad Request): {reason}"),
            StatusCode::NOT_FOUND => bail!("not found (404): {reason}"),
            StatusCode::CONFLICT => bail!("conflict (409): {reason}"),
            StatusCode::PAYLOAD_TOO_LARGE => bail!("too large (413): {reason}"),
            _ => bail!("the admin API answered {status}: {reason}"),
        }
    }
}
