//! `wasi:http/outgoing-handler`: guests call out through one pooled keep-alive client per
//! tenant, and only to the hosts and addresses their tenant was granted ([`egress`]).
//!
//! Tenant state is the tenant's egress rules and its [`OutboundClient`] (hyper-util's pooled
//! client, HTTP/1.1 and HTTP/2, https through rustls with the webpki roots): connections are
//! reused across requests and never shared between tenants. Request state is wasmtime's
//! `WasiHttpCtx` and [`OutboundCalls`], the `WasiHttpHooks` of one sandbox, which counts the
//! request's calls against `limits.outbound_calls`. The grant check happens before any
//! connection is made, and the client's resolver checks every address it connects to, so a
//! denied call fails at once with `HTTP-request-denied` instead of hanging.

pub mod egress;

use super::servers::Servers;
use super::shape::{Capability, ConfigFile, HasView, RequestInfo, TenantInfo, View, WasiReleases};
use crate::body::{BetweenBytes, CountedBody};
use crate::metrics::{OutboundMeter, RequestUsage};
use crate::sections::Table;
use crate::traces;
use anyhow::Result;
use egress::{Denial, Egress, EgressResolver, OutboundRule};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use wasmtime::component::{Accessor, HasData, Linker, Resource};
use wasmtime_wasi::TrappableError;
use wasmtime_wasi_http::p3::bindings::http as p3_http;
use wasmtime_wasi_http::{
    Error, RequestOptions, WasiBody, WasiHttp, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
};

/// Used when the guest does not set its own `request-options` timeouts.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

pub struct OutboundHttp;

/// Where a tenant's guests may call: `grants.outbound`, `grants.outbound_networks`.
#[derive(Debug, Clone, Default)]
pub struct OutboundGrant {
    rules: Vec<OutboundRule>,
    networks: Vec<ipnet::IpNet>,
}

/// A tenant's rules, its own client and its per-request quota.
pub struct TenantOutbound {
    egress: Arc<Egress>,
    client: OutboundClient,
    quota: u32,
    meter: OutboundMeter,
}

/// One sandbox's `wasi:http` state.
pub struct RequestOutbound {
    ctx: WasiHttpCtx,
    calls: OutboundCalls,
}

impl Capability for OutboundHttp {
    const GRANTS: &'static [&'static str] = &["outbound", "outbound_networks"];

    type Config = ();
    type Grant = OutboundGrant;
    type App = ();
    type Tenant = TenantOutbound;
    type Request = RequestOutbound;

    fn config(_: &ConfigFile<'_>) -> Result<()> {
        Ok(())
    }

    fn grant(grants: &Table<'_>, _: &(), _: &ConfigFile<'_>) -> Result<OutboundGrant> {
        Ok(OutboundGrant {
            rules: grants.get_each("outbound", OutboundRule::parse)?,
            networks: grants.get_each("outbound_networks", egress::parse_network)?,
        })
    }

    fn app(_: &(), _: &[(&str, &OutboundGrant)], _: &mut Servers) -> Result<()> {
        Ok(())
    }

    fn tenant(_: &(), tenant: &TenantInfo<'_>, grant: &OutboundGrant) -> Result<TenantOutbound> {
        let egress = Arc::new(Egress::new(grant.rules.clone(), grant.networks.clone()));
        let meter = tenant.metrics.outbound(tenant.name);
        Ok(TenantOutbound {
            client: OutboundClient::new(egress.clone(), meter.connections.clone()),
            egress,
            quota: tenant.limits.outbound_calls,
            meter,
        })
    }

    fn request(tenant: &TenantOutbound, _: &RequestInfo<'_>) -> Result<RequestOutbound> {
        Ok(RequestOutbound {
            ctx: WasiHttpCtx::new(),
            calls: OutboundCalls {
                egress: tenant.egress.clone(),
                client: tenant.client.clone(),
                calls_left: tenant.quota,
                quota: tenant.quota,
                meter: tenant.meter.clone(),
            },
        })
    }

    fn usage(request: &RequestOutbound, usage: &mut RequestUsage) {
        usage.outbound_calls += u64::from(request.calls.sent());
    }

    /// `wasi:http` 0.2 and 0.3 both send through the same hooks: one client, allow-list,
    /// timeouts and quota for either.
    fn add_to_linker<T: HasView<Self>>(
        linker: &mut Linker<T>,
        releases: WasiReleases,
    ) -> Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
        if releases == WasiReleases::V0_3 {
            p3_http::types::add_to_linker::<T, WasiHttp>(linker, T::http)?;
            p3_http::client::add_to_linker::<T, Client03>(linker, T::http)?;
        }
        Ok(())
    }
}

/// `wasi:http/client` of WASI 0.3: wasmtime's, with the request's path defaulted to `/` when
/// the guest set none, as WASI specifies (WebAssembly/WASI#949) and WASI 0.2 does; wasmtime
/// 50 refuses such a request as `HTTP-request-URI-invalid`.
struct Client03;

impl HasData for Client03 {
    type Data<'a> = WasiHttpCtxView<'a>;
}

impl<T: 'static> p3_http::client::HostWithStore<T> for Client03 {
    async fn send(
        store: &Accessor<T, Self>,
        request: Resource<p3_http::types::Request>,
    ) -> Result<Resource<p3_http::types::Response>, TrappableError<p3_http::types::ErrorCode>> {
        store
            .with(|mut access| -> wasmtime::Result<()> {
                let request = access.get().table.get_mut(&request)?;
                if request.path_with_query.is_none() {
                    request.path_with_query = Some(http::uri::PathAndQuery::from_static("/"));
                }
                Ok(())
            })
            .map_err(TrappableError::trap)?;
        <WasiHttp as p3_http::client::HostWithStore<T>>::send(
            &store.with_getter::<WasiHttp>(store.getter()),
            request,
        )
        .await
    }
}

/// The view wasmtime's `wasi:http` implementation works on (a store's `WasiHttpView`).
pub fn ctx(view: View<'_, OutboundHttp>) -> WasiHttpCtxView<'_> {
    let View { request, table, .. } = view;
    WasiHttpCtxView {
        ctx: &mut request.ctx,
        table,
        hooks: &mut request.calls,
    }
}

/// A tenant's pooled outbound HTTP client (cheap to clone: the pool is shared).
#[derive(Clone)]
pub struct OutboundClient {
    client: Client<Counted<HttpsConnector<HttpConnector<EgressResolver>>>, WasiBody>,
}

impl OutboundClient {
    /// A client that connects only where `egress` permits, counting its connections in
    /// `connections`.
    pub fn new(egress: Arc<Egress>, connections: Counter) -> OutboundClient {
        let mut http = HttpConnector::new_with_resolver(EgressResolver::new(egress));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(Counted {
                inner: https,
                connections,
            });
        OutboundClient { client }
    }
}

/// A connector that counts the connections it makes: the pooled client only connects for
/// a connection it does not have.
#[derive(Clone)]
pub struct Counted<C> {
    inner: C,
    connections: Counter,
}

impl<C: tower_service::Service<http::Uri>> tower_service::Service<http::Uri> for Counted<C> {
    type Response = C::Response;
    type Error = C::Error;
    type Future = C::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), C::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> C::Future {
        self.connections.inc();
        self.inner.call(uri)
    }
}

/// The per-request hooks: the tenant's grants, its client and what is left of the request's
/// outbound-call quota.
pub struct OutboundCalls {
    egress: Arc<Egress>,
    client: OutboundClient,
    calls_left: u32,
    quota: u32,
    meter: OutboundMeter,
}

impl OutboundCalls {
    /// Calls the guest made that were sent (for its tenant's usage).
    pub fn sent(&self) -> u32 {
        self.quota - self.calls_left
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendResult = Result<(http::Response<WasiBody>, IoFuture), Error>;

impl WasiHttpHooks for OutboundCalls {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        match self.egress.check(request.uri()) {
            Ok(()) => {}
            Err(Denial::NotGranted) => {
                self.meter.failed();
                tracing::warn!(uri = %request.uri(), "outbound request denied: host not granted to this tenant (grants.outbound)");
                return Box::new(async { Err(Error::HttpRequestDenied) });
            }
            Err(Denial::Address(address)) => {
                self.meter.failed();
                tracing::warn!(uri = %request.uri(), %address, "outbound request denied: the address is not public and not granted (grants.outbound_networks)");
                return Box::new(async { Err(Error::HttpRequestDenied) });
            }
        }
        let Some(left) = self.calls_left.checked_sub(1) else {
            self.meter.failed();
            let quota = self.quota;
            tracing::warn!(uri = %request.uri(), quota, "outbound request refused: the request's outbound-call quota is used up");
            return Box::new(async move {
                Err(Error::InternalError(Some(format!(
                    "outbound-call quota exceeded: at most {quota} per request (limits.outbound_calls)"
                ))))
            });
        };
        self.calls_left = left;
        let meter = self.meter.clone();
        meter.calls.inc();
        let mut request = request;
        // With traces on, the called server gets this call's span as its `traceparent`.
        let span = traces::outbound(&mut request);
        let request = request.map(|body| CountedBody::new(body, meter.sent.clone()).boxed_unsync());
        let client = self.client.client.clone();
        let options = options.unwrap_or_default();
        let connect = options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let first_byte = options
            .first_byte_timeout
            .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
        let between_bytes = options
            .between_bytes_timeout
            .unwrap_or(DEFAULT_BETWEEN_BYTES_TIMEOUT);
        Box::new(async move {
            // A pooled connection may need no connecting at all, so the two budgets are one.
            let sent = tokio::time::timeout(connect + first_byte, client.request(request))
                .instrument(span.clone())
                .await
                .map_err(|_| Error::HttpResponseTimeout)
                .and_then(|sent| sent.map_err(client_error));
            traces::outbound_done(&span, &sent);
            let response = sent.inspect_err(|_| meter.failed())?;
            let response = response.map(|body| {
                let body = BetweenBytes::new(body, between_bytes);
                CountedBody::new(body, meter.received).boxed_unsync()
            });
            // The pooled client drives its connections itself: nothing for the caller to await.
            let io: IoFuture = Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

fn client_error(e: hyper_util::client::legacy::Error) -> Error {
    if let Some(refused) = egress::refusal_in(&e) {
        tracing::warn!("outbound request denied: {refused}");
        return Error::HttpRequestDenied;
    }
    if e.is_connect() {
        tracing::debug!("outbound connect failed: {e:?}");
        return Error::ConnectionRefused;
    }
    match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<hyper::Error>()) {
        Some(_) => Error::HttpProtocolError,
        None => Error::InternalError(Some(e.to_string())),
    }
}
