//! The admin API: deploy, list, inspect and remove apps on a running host.
//!
//! Its own listener (loopback by default), JSON over HTTP/1.1, bearer tokens: the operator's
//! token manages every tenant, a tenant's token only that tenant. A deploy is validated —
//! compiled, linked against what the host provides, checked for the HTTP handler export —
//! before anything changes; then the component is stored, the manifest replaced and the router
//! swapped, in that order, so a crash never leaves a half-deployed set.
//!
//! | request | does |
//! |---|---|
//! | `GET /v1/apps` | every app the token may see |
//! | `GET /v1/tenants/T/apps/A` | one app, with its component's imports |
//! | `PUT /v1/tenants/T/apps/A?route=/path` (body: the component) | deploy or replace |
//! | `DELETE /v1/tenants/T/apps/A` | remove a deployed app |
//! | `GET /v1/usage?from=&to=` | usage by hour, tenant and app (a tenant's token: its own) |
//! | `GET /metrics` | Prometheus metrics (operator token, or none with `metrics.open`; [`scrape`]) |
//! | `GET /healthz`, `GET /readyz` | the probes, without a token ([`crate::health`]) |

pub mod auth;
pub mod deployed;
pub mod deployments;
pub mod scrape;

use crate::Host;
use crate::apps::{AppKey, Deployment, Installed, Origin, Source};
use crate::cluster::Cluster;
use crate::cluster::usage::ClusterUsage;
use crate::config;
use crate::health;
use crate::names;
use crate::routes::{self, Claim};
use crate::usage::UsageLedger;
use anyhow::{Context, Result};
use auth::{Principal, Tokens};
use bytes::Bytes;
use deployed::{DeployedSet, Refused};
use deployments::DeploymentStore;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use scrape::Scrape;
use serde_json::{Value, json};
use std::sync::Arc;

pub use crate::apps::MAX_COMPONENT;

pub struct Admin {
    host: Arc<Host>,
    set: DeployedSet,
    tokens: Arc<Tokens>,
    scrape: Arc<Scrape>,
    usage: Arc<UsageLedger>,
}

/// Loads the deployed set `store` holds and installs it on `host` (serving it, once the host
/// serves); returns how many apps it installed. A deployment whose tenant the config no longer
/// has is skipped with a warning (and dropped from the manifest at the next change).
pub fn restore(host: &Host, store: &DeploymentStore, admin: &config::AdminConfig) -> Result<usize> {
    let mut installed = 0;
    for (deployment, bytes) in store.load()? {
        let key = (deployment.tenant.clone(), deployment.app.clone());
        let loaded = (host.load_deployed(&deployment, &bytes))
            .with_context(|| format!("in {}", admin.state.display()))?;
        if let Some(app) = loaded {
            host.install(key, app);
            installed += 1;
        }
    }
    Ok(installed)
}

impl Admin {
    /// Opens the deployment store and serves the deployed set it holds on `host`; in cluster
    /// mode the set and the usage are the cluster's (and `cluster` serves the set once
    /// started). `open_metrics`: `metrics.open`, whether `GET /metrics` needs no token.
    pub fn start(
        host: Arc<Host>,
        admin: &config::AdminConfig,
        open_metrics: bool,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Admin> {
        let metrics = host.metrics().clone();
        let (set, usage) = match cluster {
            Some(cluster) => (
                DeployedSet::Cluster(cluster.clone()),
                UsageLedger::new(Box::new(ClusterUsage::new(cluster)), metrics),
            ),
            None => {
                let store = DeploymentStore::open(&admin.state)?;
                restore(&host, &store, admin)?;
                let usage = UsageLedger::open(&admin.state.join("usage.redb"), metrics)
                    .context("key `admin.state`")?;
                (DeployedSet::local(store), usage)
            }
        };
        let tokens = Arc::new(Tokens::new(admin.operator_token, &host));
        Ok(Admin {
            usage: Arc::new(usage),
            scrape: Arc::new(Scrape::new(
                host.clone(),
                Some(tokens.clone()),
                open_metrics,
            )),
            tokens,
            host,
            set,
        })
    }

    /// hyper's service function for the admin listener.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
        if request.uri().path() == "/metrics" {
            return Ok(self.scrape.handle(&request).await);
        }
        if let Some(reply) = self.probe(&request).await {
            return Ok(reply);
        }
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let reply = self
            .route(request)
            .await
            .unwrap_or_else(ApiError::into_response);
        tracing::info!(%method, path, status = reply.status().as_u16(), "admin request");
        Ok(reply)
    }

    /// The health probes, answered before any token is asked for: load balancers and
    /// Kubernetes have none. Logged at DEBUG only, as they come every few seconds.
    async fn probe(&self, request: &Request<Incoming>) -> Option<Reply> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return None;
        }
        let reply = match request.uri().path() {
            "/healthz" => health::liveness(),
            "/readyz" => self.host.readiness().response().await,
            _ => return None,
        };
        let (path, status) = (request.uri().path(), reply.status().as_u16());
        tracing::debug!(path, status, "health probe");
        Some(reply)
    }

    async fn route(&self, request: Request<Incoming>) -> Result<Reply, ApiError> {
        let authorization = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal = self.tokens.identify(authorization).ok_or_else(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required: `Authorization: Bearer TOKEN` with the \
                 operator's or a tenant's admin token",
            )
        })?;
        let segments: Vec<&str> = request.uri().path().trim_matches('/').split('/').collect();
        match (request.method(), segments.as_slice()) {
            (&Method::GET, ["v1", "apps"]) => Ok(self.list(&principal)),
            (&Method::GET, ["v1", "usage"]) => self.usage_report(&principal, &request).await,
            (&Method::GET, ["v1", "cluster"]) => self.cluster_status(&principal).await,
            (method, ["v1", "tenants", tenant, "apps", app]) => {
                let key = (tenant.to_string(), app.to_string());
                self.check_tenant(&principal, &key.0)?;
                match *method {
                    Method::GET => self.inspect(&key),
                    Method::PUT => self.deploy(key, request).await,
                    Method::DELETE => self.remove(&key).await,
                    _ => Err(error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "use GET, PUT or DELETE on an app",
                    )),
                }
            }
            _ => Err(error(
                StatusCode::NOT_FOUND,
                "no such admin endpoint: see GET /v1/apps, GET /v1/usage, GET /v1/cluster, \
                 GET|PUT|DELETE /v1/tenants/T/apps/A",
            )),
        }
    }

    /// What `GET /metrics` answers, with this API's tokens: for `[metrics] listen` too.
    pub fn scrape(&self) -> &Arc<Scrape> {
        &self.scrape
    }

    /// The usage ledger: flushed every [`crate::usage::FLUSH_INTERVAL`] once started, and at
    /// shutdown by whoever stops the host.
    pub fn usage(&self) -> &Arc<UsageLedger> {
        &self.usage
    }

    /// `GET /v1/usage?from=&to=`: every hour overlapping `from..to` (RFC 3339 or Unix seconds;
    /// the last 24 hours by default), for every tenant (operator) or the token's own.
    async fn usage_report(
        &self,
        principal: &Principal,
        request: &Request<Incoming>,
    ) -> Result<Reply, ApiError> {
        let now = crate::usage::now();
        let bound = |name: &str, default: u64| match query_param(request.uri().query(), name) {
            None => Ok(default),
            Some(text) => parse_time(&text).ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "`{name}` must be a time as RFC 3339 (2026-12-01T17:00:00Z) or Unix \
                         seconds, up to the year 9999, not {text:?}"
                    ),
                )
            }),
        };
        let from = bound("from", now.saturating_sub(24 * 3600))?;
        let to = bound("to", now + 1)?;
        if from > to {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "`from` is after `to`: the range is empty",
            ));
        }
        let tenant = match principal {
            Principal::Operator => None,
            Principal::Tenant(own) => Some(own.clone()),
        };
        let buckets = (self.usage.query(from, to, tenant.as_deref()).await).map_err(internal)?;
        let rows: Vec<Value> = buckets.iter().map(describe_usage).collect();
        Ok(reply(
            StatusCode::OK,
            json!({ "from": rfc3339(from), "to": rfc3339(to), "usage": rows }),
        ))
    }

    fn check_tenant(&self, principal: &Principal, tenant: &str) -> Result<(), ApiError> {
        if !principal.may_manage(tenant) {
            return Err(error(
                StatusCode::FORBIDDEN,
                &format!("this token may not manage tenant `{tenant}`"),
            ));
        }
        if self.host.tenant(tenant).is_none() {
            return Err(error(
                StatusCode::NOT_FOUND,
                &format!("no tenant `{tenant}` in the config"),
            ));
        }
        Ok(())
    }

    fn list(&self, principal: &Principal) -> Response<Full<Bytes>> {
        let apps: Vec<Value> = self
            .host
            .installed()
            .iter()
            .filter(|((tenant, _), _)| principal.may_manage(tenant))
            .map(|(key, installed)| describe(key, installed))
            .collect();
        reply(StatusCode::OK, json!({ "apps": apps }))
    }

    fn inspect(&self, key: &AppKey) -> Result<Reply, ApiError> {
        let (_, installed) = self
            .host
            .installed()
            .into_iter()
            .find(|(k, _)| k == key)
            .ok_or_else(|| no_app(key))?;
        let mut body = describe(key, &installed);
        let component = installed.app.handler.instance_pre().component();
        let ty = component.component_type();
        let engine = installed.app.handler.instance_pre().engine();
        body["imports"] = ty.imports(engine).map(|(name, _)| name).collect();
        body["exports"] = ty.exports(engine).map(|(name, _)| name).collect();
        Ok(reply(StatusCode::OK, body))
    }

    async fn deploy(&self, key: AppKey, request: Request<Incoming>) -> Result<Reply, ApiError> {
        let (tenant, name) = &key;
        names::check(name, "app").map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))?;
        let route = query_param(request.uri().query(), "route")
            .ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    "say where to mount the app: ?route=/path",
                )
            })
            .and_then(|r| {
                routes::normalize_route(&r)
                    .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("route {r:?}: {e}")))
            })?;
        let bytes = Limited::new(request.into_body(), MAX_COMPONENT)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("components are limited to {MAX_COMPONENT} bytes"),
                    )
                } else {
                    error(StatusCode::BAD_REQUEST, &format!("upload broke off: {e}"))
                }
            })?
            .to_bytes();

        let runtime = self.host.tenant(tenant).expect("checked").clone();
        let mut compiled = None;
        for attempt in 0.. {
            let mut change = self.set.lock().await;
            let installed = self.host.installed();
            self.check_deploy(&key, &route, &installed)?;
            // Validate by loading (once, however often the change is retried): compiling
            // takes a while for large components.
            let app = match compiled.take() {
                Some(app) => app,
                None => {
                    let host = self.host.clone();
                    let (runtime, app_name) = (runtime.clone(), name.clone());
                    let (app_route, wasm) = (route.clone(), bytes.clone());
                    tokio::task::spawn_blocking(move || {
                        host.loader()
                            .load(runtime, &app_name, &app_route, Source::Bytes(&wasm))
                    })
                    .await
                    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
                    .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("{e:#}")))?
                }
            };
            let digest = self.set.store_component(&bytes).await.map_err(refused)?;
            let deployment = Deployment {
                tenant: tenant.clone(),
                app: name.clone(),
                route: route.clone(),
                digest,
                size: bytes.len() as u64,
                deployed_at: deployments::now(),
            };
            let mut set = self.set.current(&change, &installed);
            set.retain(|d| (&d.tenant, &d.app) != (&key.0, &key.1));
            set.push(deployment.clone());
            if !self.set.commit(&mut change, &set).await.map_err(refused)? {
                compiled = Some(app);
                self.set
                    .wait_for_others(change, attempt)
                    .await
                    .map_err(refused)?;
                continue;
            }
            let replaced = self.host.install(
                key.clone(),
                Installed {
                    app: Arc::new(app),
                    origin: Origin::Deployed(deployment),
                },
            );
            drop(change);
            tracing::info!(%tenant, app = %name, replaced = replaced.is_some(), "app deployed");
            (self.host.metrics()).app_changed(if replaced.is_some() { "swap" } else { "deploy" });
            let (_, now) = (self.host.installed().into_iter())
                .find(|(k, _)| *k == key)
                .expect("just installed");
            let status = if replaced.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            return Ok(reply(status, describe(&key, &now)));
        }
        unreachable!("the loop returns")
    }

    /// What a deploy of `key` at `route` must not break: an app from the config, the tenant's
    /// app limit, another app's route.
    fn check_deploy(
        &self,
        key: &AppKey,
        route: &str,
        installed: &[(AppKey, Installed)],
    ) -> Result<(), ApiError> {
        let (tenant, name) = key;
        if let Some((_, existing)) = installed.iter().find(|(k, _)| k == key)
            && let Origin::Config(path) = &existing.origin
        {
            return Err(error(
                StatusCode::CONFLICT,
                &format!(
                    "app `{name}` of tenant `{tenant}` comes from the config ({}): change the \
                     config to replace it, or deploy under another name",
                    path.display()
                ),
            ));
        }
        let runtime = self.host.tenant(tenant).expect("checked");
        let replaces = installed.iter().any(|(k, _)| k == key);
        let apps = (installed.iter())
            .filter(|((owner, _), _)| owner == tenant)
            .count();
        if !replaces && apps >= runtime.limits.apps as usize {
            return Err(error(
                StatusCode::FORBIDDEN,
                &format!(
                    "tenant `{tenant}` has {apps} apps, its limit (`limits.apps`): remove one, \
                     replace one by deploying under its name, or ask the operator for more"
                ),
            ));
        }
        let candidate = Claim {
            tenant,
            app: name,
            hosts: &runtime.hosts,
            route,
        };
        let held = installed.iter().map(|((tenant, app), i)| Claim {
            tenant,
            app,
            hosts: &i.app.tenant.hosts,
            route: &i.app.route,
        });
        if let Some(conflict) = routes::conflict(held, &candidate) {
            return Err(error(
                StatusCode::CONFLICT,
                &format!("route {route} cannot be mounted: {conflict}"),
            ));
        }
        Ok(())
    }

    async fn remove(&self, key: &AppKey) -> Result<Reply, ApiError> {
        for attempt in 0.. {
            let mut change = self.set.lock().await;
            let installed = self.host.installed();
            if let Some((_, existing)) = installed.iter().find(|(k, _)| k == key)
                && let Origin::Config(path) = &existing.origin
            {
                return Err(error(
                    StatusCode::CONFLICT,
                    &format!(
                        "app `{}` comes from the config ({}): remove it there",
                        key.1,
                        path.display()
                    ),
                ));
            }
            // In a cluster the set names apps that may not have loaded on this host.
            let current = self.set.current(&change, &installed);
            if !current
                .iter()
                .any(|d| (&d.tenant, &d.app) == (&key.0, &key.1))
            {
                return Err(no_app(key));
            }
            let mut set = self.set.current(&change, &installed);
            set.retain(|d| (&d.tenant, &d.app) != (&key.0, &key.1));
            if !self.set.commit(&mut change, &set).await.map_err(refused)? {
                self.set
                    .wait_for_others(change, attempt)
                    .await
                    .map_err(refused)?;
                continue;
            }
            self.host.uninstall(key);
            drop(change);
            self.host.metrics().app_changed("remove");
            tracing::info!(tenant = %key.0, app = %key.1, "app removed");
            return Ok(Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Full::default())
                .expect("valid response"));
        }
        unreachable!("the loop returns")
    }

    /// `GET /v1/cluster` (operator): the cluster's manifest revision and every host's
    /// progress through it, with any revision a host could not apply.
    async fn cluster_status(&self, principal: &Principal) -> Result<Reply, ApiError> {
        if !matches!(principal, Principal::Operator) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "the cluster's status names every host: it takes the operator's token",
            ));
        }
        let DeployedSet::Cluster(cluster) = &self.set else {
            return Err(error(
                StatusCode::NOT_FOUND,
                "this host is not in a cluster (no [cluster] section)",
            ));
        };
        let (revision, hosts) = cluster
            .status()
            .await
            .map_err(|e| refused(Refused::Unavailable(e)))?;
        Ok(reply(
            StatusCode::OK,
            json!({ "host": cluster.host_id(), "revision": revision, "hosts": hosts }),
        ))
    }
}

/// A change the store refused, as the API answers it.
fn refused(refused: Refused) -> ApiError {
    match refused {
        Refused::Conflict => error(
            StatusCode::CONFLICT,
            "the deployed set kept changing through other hosts while this change was tried; \
             nothing changed: retry",
        ),
        Refused::Unavailable(e) => {
            tracing::warn!("admin change refused, the cluster's store is unavailable: {e:#}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "the cluster's store (NATS JetStream) is unavailable, nothing changed: \
                     retry once it is reachable ({e:#})"
                ),
            )
        }
        Refused::Failed(e) => internal(e),
    }
}

type Reply = Response<Full<Bytes>>;

/// Why an admin request was refused: becomes `{"error": message}` with the status.
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn into_response(self) -> Reply {
        let mut response = reply(self.status, json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
        }
        response
    }
}

/// The deployed (not configured) apps.
pub(crate) fn deployed(installed: &[(AppKey, Installed)]) -> Vec<Deployment> {
    installed
        .iter()
        .filter_map(|(_, i)| match &i.origin {
            Origin::Deployed(d) => Some(d.clone()),
            Origin::Config(_) => None,
        })
        .collect()
}

fn describe((tenant, name): &AppKey, installed: &Installed) -> Value {
    let mut app = json!({
        "tenant": tenant,
        "app": name,
        "route": installed.app.route,
        "hosts": installed.app.tenant.hosts,
        "world": installed.app.handler.world(),
    });
    match &installed.origin {
        Origin::Config(path) => {
            app["source"] = "config".into();
            app["component"] = path.display().to_string().into();
        }
        Origin::Deployed(d) => {
            app["source"] = "deployed".into();
            app["digest"] = format!("sha256:{}", d.digest).into();
            app["size"] = d.size.into();
            app["deployed_at"] = d.deployed_at.clone().into();
        }
    }
    app
}

/// One bucket as the API shows it: times in seconds, memory × time in MiB·s.
fn describe_usage(bucket: &crate::usage::Bucket) -> Value {
    let a = &bucket.amounts;
    json!({
        "tenant": bucket.tenant,
        "app": bucket.app,
        "hour": rfc3339(bucket.hour),
        "requests": a.requests,
        "guest_cpu_seconds": a.guest_cpu_ns as f64 / 1e9,
        "memory_mib_seconds": a.memory_mib_ms as f64 / 1e3,
        "bytes_in": a.bytes_in,
        "bytes_out": a.bytes_out,
        "outbound_calls": a.outbound_calls,
        "pool_seconds": a.pool_ns as f64 / 1e9,
    })
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z): later times are refused, not
/// wrapped or panicked on.
const LAST_TIME: u64 = 253_402_300_799;

/// Unix seconds from RFC 3339 (`2026-12-01T17:00:00Z`) or from a plain number, up to
/// [`LAST_TIME`].
fn parse_time(text: &str) -> Option<u64> {
    let seconds = match text.parse::<u64>() {
        Ok(seconds) => seconds,
        Err(_) => {
            let time = humantime::parse_rfc3339_weak(text).ok()?;
            time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()
        }
    };
    (seconds <= LAST_TIME).then_some(seconds)
}

fn rfc3339(unix: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(time).to_string()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn no_app((tenant, app): &AppKey) -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        &format!("tenant `{tenant}` has no app `{app}`"),
    )
}

fn internal(e: anyhow::Error) -> ApiError {
    tracing::error!("admin change failed: {e:#}");
    error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))
}

fn error(status: StatusCode, message: &str) -> ApiError {
    ApiError {
        status,
        message: message.to_string(),
    }
}

fn reply(status: StatusCode, body: Value) -> Reply {
    let mut text = serde_json::to_vec_pretty(&body).expect("JSON values serialise");
    text.push(b'\n');
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(text)))
        .expect("valid response")
}
