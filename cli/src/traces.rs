//! Exporting traces over OTLP, configured the standard way: by the `OTEL_*` environment
//! variables every OpenTelemetry SDK reads, so that an operator's usual setup works unchanged.
//!
//! On only when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and not disabled (`OTEL_SDK_DISABLED=true`,
//! `OTEL_TRACES_EXPORTER=none`); off, nothing here exists and the log subscriber is the one it
//! always was. On, the SDK's batch processor queues finished spans (bounded: a full queue
//! drops spans rather than hold memory or slow a request) and its own thread sends them over
//! OTLP/HTTP, protobuf or JSON, through hyper and the host's rustls. The host's side — which
//! spans, which headers — is `hostel::traces`.

use anyhow::{Context, Result, bail};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::{Layer, Registry};

/// How long `serve` waits, after the drain, for the last spans to be sent.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// OTLP's default export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds).
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

/// An installed exporter: what the log subscriber's trace layer sends to, and what `serve`
/// flushes as it ends.
pub struct Traces {
    provider: SdkTracerProvider,
    /// Where spans go, for the log line saying so.
    endpoint: String,
}

impl Traces {
    /// The exporter the environment configures, or `None` when it configures none. A setting
    /// this build cannot honour (gRPC, another exporter) is an error rather than silence.
    pub fn from_env() -> Result<Option<Traces>> {
        Self::from(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    fn from(var: impl Fn(&str) -> Option<String>) -> Result<Option<Traces>> {
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => bail!(
                "OTEL_TRACES_EXPORTER={other:?}: Hostel exports traces over OTLP only \
                 (`otlp`, or `none` to turn them off)"
            ),
        }
        let endpoint = match var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(endpoint) => endpoint,
            None => match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => format!("{}/v1/traces", base.trim_end_matches('/')),
                None => return Ok(None),
            },
        };
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "http/protobuf".into());
        // Said explicitly: the exporter's own default, with JSON built in, is JSON.
        let protocol = match protocol.trim() {
            "http/protobuf" => Protocol::HttpBinary,
            "http/json" => Protocol::HttpJson,
            "grpc" => bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: this build exports over OTLP/HTTP only; set \
                 it to `http/protobuf` (or `http/json`) and point the endpoint at the \
                 collector's HTTP port (4318 by default)"
            ),
            other => bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other:?}: expected `http/protobuf` or `http/json`"
            ),
        };
        let url: http::Uri = endpoint.parse().with_context(|| {
            format!("the OTLP traces endpoint {endpoint:?} is not an http:// or https:// URL")
        })?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            bail!("the OTLP traces endpoint {endpoint:?} is not an http:// or https:// URL");
        }
        let timeout = match var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))
        {
            Some(ms) => Duration::from_millis(ms.trim().parse().with_context(|| {
                format!("OTEL_EXPORTER_OTLP_TIMEOUT={ms:?}: expected milliseconds")
            })?),
            None => DEFAULT_TIMEOUT,
        };

        hostel::tls::install_crypto_provider();
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .with_protocol(protocol)
            .with_timeout(timeout)
            .with_http_client(OwnRuntime::new(timeout)?)
            .build()
            .context("cannot set up the OTLP traces exporter")?;
        let mut resource = Resource::builder();
        // The SDK names an unnamed service `unknown_service`; this one has a name.
        let named = var("OTEL_SERVICE_NAME").is_some()
            || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
        if !named {
            resource = resource.with_service_name("hostel");
        }
        let resource = resource
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        // The sampler (`OTEL_TRACES_SAMPLER`, `_ARG`), span limits (`OTEL_SPAN_*`) and the
        // batch processor's queue and schedule (`OTEL_BSP_*`) are the SDK's, from the
        // environment.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Some(Traces { provider, endpoint }))
    }

    /// The layer that makes spans of the host's: the request span and those of target
    /// `hostel::otel`, with the host's warnings and errors as their events (never a guest's
    /// log lines, which are the guest's to write).
    pub fn layer(&self) -> impl Layer<Registry> + Send + Sync + 'static {
        let tracer = self.provider.tracer("hostel");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // Each would add attributes (and work) to every span.
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(filter_fn(exported).with_max_level_hint(Level::INFO))
    }

    /// Says where spans go; call once the log is installed.
    pub fn announce(&self) {
        tracing::info!(endpoint = %self.endpoint, "exporting traces over OTLP");
    }

    /// Sends what is queued, waiting at most [`FLUSH_WAIT`].
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(FLUSH_WAIT) {
            tracing::warn!("traces not all sent at shutdown (waited at most {FLUSH_WAIT:?}): {e}");
        }
    }
}

/// What the trace layer sees. Decided once per callsite (`filter_fn` caches it), so the rest
/// of the process's spans and events cost it nothing.
fn exported(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    if meta.is_span() {
        target == hostel::traces::TARGET
            || (target == "hostel::request" && meta.name() == "request")
    } else {
        *meta.level() <= Level::WARN && (target == "hostel" || target.starts_with("hostel::"))
    }
}

/// The exporter's HTTP client: hyper over the host's rustls (no second TLS stack), driven by
/// a runtime of its own. The batch processor calls it on its own thread, outside the host's
/// runtime, so a slow collector never holds up a worker that serves requests.
#[derive(Debug)]
struct OwnRuntime {
    client: HyperClient<HttpsConnector<HttpConnector>>,
    runtime: tokio::runtime::Runtime,
}

impl OwnRuntime {
    fn new(timeout: Duration) -> Result<OwnRuntime> {
        let connector = HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime of the OTLP exporter")?;
        Ok(OwnRuntime {
            client: HyperClient::new(connector, timeout, None),
            runtime,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for OwnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let send = self.client.send_bytes(request);
        // Called from within a runtime after all (not the SDK's thread): run there.
        if tokio::runtime::Handle::try_current().is_ok() {
            return send.await;
        }
        self.runtime.block_on(send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn traces(vars: &[(&str, &str)]) -> Result<Option<Traces>> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Traces::from(|name| vars.get(name).cloned().filter(|v| !v.is_empty()))
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert!(traces(&[]).unwrap().is_none());
        assert!(traces(&[("OTEL_SERVICE_NAME", "x")]).unwrap().is_none());
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert!(
            traces(&[endpoint, ("OTEL_SDK_DISABLED", "true")])
                .unwrap()
                .is_none()
        );
        assert!(
            traces(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn on_with_either_endpoint() {
        let on = traces(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")]).unwrap();
        assert_eq!(on.unwrap().endpoint, "http://127.0.0.1:4318/v1/traces");
        let on = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://collector.example/traces",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .unwrap();
        assert_eq!(on.unwrap().endpoint, "https://collector.example/traces");
    }

    #[test]
    fn what_this_build_cannot_honour_is_an_error() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
        for (vars, says) in [
            (
                vec![endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
                "4318",
            ),
            (
                vec![endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")],
                "http/protobuf",
            ),
            (
                vec![endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTLP only",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318")],
                "not an http",
            ),
            (
                vec![endpoint, ("OTEL_EXPORTER_OTLP_TIMEOUT", "5s")],
                "milliseconds",
            ),
        ] {
            let error = format!("{:#}", traces(&vars).err().expect("an error"));
            assert!(error.contains(says), "{vars:?}: {error}");
        }
    }
}
