//! One request, one sandbox: a new `Store` instantiated from the app's pre-instantiated
//! component, limits applied, the guest's handler called — `wasi:http/incoming-handler` of
//! WASI 0.2 or `wasi:http/handler` of WASI 0.3 — and everything the guest held dropped with the
//! store — after a normal return, a trap or a timeout alike.

use crate::capabilities::shape::CallBudget;
use crate::capabilities::shape::{HasView, RequestInfo};
use crate::capabilities::{Parts, RequestCapabilities, StoreData, outbound_http, wasi};
use crate::fair_share::GuestShare;
use crate::metrics::{AppMeter, GuestCpu, Sandboxed};
use crate::tenant::Tenant;
use crate::traces;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::Instrument;
use wasmtime::component::{InstancePre, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{IncomingRequest, ResponseOutparam, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

/// How long past its deadline a request waits for a guest that has not stopped itself.
const DEADLINE_GRACE: Duration = Duration::from_millis(100);

/// The data of a request's `Store`: its tenant, the request-lifetime state of every
/// capability and the resource table they share, and the sandbox's own limits.
pub struct SandboxState {
    tenant: Arc<Tenant>,
    capabilities: RequestCapabilities,
    table: ResourceTable,
    calls: CallBudget,
    memory: MemoryLimit,
    deadline: Instant,
    timed_out: bool,
    /// Its place in the tenant's share of the workers.
    cpu_share: GuestShare,
    /// How long instantiating took, once it has.
    instantiation: Option<Duration>,
}

impl StoreData for SandboxState {
    fn capabilities(&mut self) -> Parts<'_> {
        Parts {
            tenant: &self.tenant.capabilities,
            request: &mut self.capabilities,
            table: &mut self.table,
            calls: &self.calls,
        }
    }
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        wasi::ctx(HasView::<wasi::Wasi>::view(self))
    }
}

impl WasiHttpView for SandboxState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        outbound_http::ctx(HasView::<outbound_http::OutboundHttp>::view(self))
    }
}

/// An app's handler, pre-instantiated. Which one a component is, is told at load from what
/// it exports; both are served the same way, with the same limits and capabilities.
#[derive(Clone)]
pub enum Handler {
    /// `wasi:http/incoming-handler@0.2.x`: the `wasi:http/proxy` world of WASI 0.2.
    Http02(ProxyPre<SandboxState>),
    /// `wasi:http/handler@0.3.x`: the `wasi:http/service` world of WASI 0.3.
    Http03(ServicePre<SandboxState>),
}

impl Handler {
    /// The handler `instance_pre`'s component exports, or why it has none Hostel serves.
    pub fn new(instance_pre: InstancePre<SandboxState>) -> anyhow::Result<Handler> {
        if let Ok(pre) = ProxyPre::new(instance_pre.clone()) {
            return Ok(Handler::Http02(pre));
        }
        if let Ok(pre) = ServicePre::new(instance_pre.clone()) {
            return Ok(Handler::Http03(pre));
        }
        let component = instance_pre.component();
        let engine = instance_pre.engine();
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        const SERVED: &str = "Hostel serves components that export \
             `wasi:http/incoming-handler@0.2.x` (the WASI 0.2 `wasi:http/proxy` world) or \
             `wasi:http/handler@0.3.x` (the WASI 0.3 `wasi:http/service` world)";
        if exports
            .iter()
            .any(|name| name.starts_with("`wasi:cli/run@"))
        {
            anyhow::bail!(
                "it is a WASI command (the `wasi:cli/command` world: it exports `wasi:cli/run`), \
                 a program to run once, not an HTTP handler; {SERVED}"
            );
        }
        let exports = if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        };
        anyhow::bail!("it is not an HTTP handler: it exports {exports}; {SERVED}")
    }

    pub fn instance_pre(&self) -> &InstancePre<SandboxState> {
        match self {
            Handler::Http02(pre) => pre.instance_pre(),
            Handler::Http03(pre) => pre.instance_pre(),
        }
    }

    /// The world the component was built for, as `hostel check` and the admin API say it.
    pub fn world(&self) -> &'static str {
        match self {
            Handler::Http02(_) => "wasi:http/proxy (WASI 0.2)",
            Handler::Http03(_) => "wasi:http/service (WASI 0.3)",
        }
    }
}

/// A request made into the resources its handler takes, before the call.
enum Prepared {
    Http02 {
        pre: ProxyPre<SandboxState>,
        request: Resource<IncomingRequest>,
        out: Resource<ResponseOutparam>,
    },
    Http03 {
        pre: ServicePre<SandboxState>,
        request: p3::Request,
        /// Reports a failure to read the request body to the guest's response.
        request_io: Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>>,
        answer: oneshot::Sender<Answer>,
    },
}

/// What the guest hands back: response headers (the body still streaming), or its error code.
type Answer = Result<hyper::Response<HyperOutgoingBody>, String>;

/// Caps each linear memory of the instance and remembers whether the cap was hit, so the
/// resulting trap can be reported as what it is.
struct MemoryLimit {
    bytes: usize,
    exceeded: bool,
    /// Linear memory the instance has now, and the most it had.
    total: usize,
    peak: usize,
}

impl ResourceLimiter for MemoryLimit {
    /// Also called as each memory is made, with `current` 0.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.total = self.total.saturating_add(desired.saturating_sub(current));
        self.peak = self.peak.max(self.total);
        if desired > self.bytes {
            self.exceeded = true;
            wasmtime::bail!(
                "memory limit exceeded: the guest asked for {desired} bytes, its limit is {}",
                self.bytes
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// Why a request got no response from its guest.
#[derive(Debug)]
pub enum Failure {
    /// The wall-clock deadline passed (CPU-bound or waiting).
    Timeout(Duration),
    /// The guest needed more memory than its limit.
    MemoryLimit(String),
    /// No sandbox slot was free (the pooling allocator is at `server.max_instances`).
    Overloaded(String),
    /// The guest trapped or panicked.
    Trap(String),
    /// The guest answered with an error code instead of a response.
    GuestError(String),
    /// The guest returned without setting a response.
    NoResponse,
    /// Setting up the sandbox failed: a host problem.
    Host(String),
}

/// Runs an app's guest — `handler`, its pre-instantiated component, for `tenant` — on one
/// request. Resolves once the guest has produced response headers (the body keeps streaming
/// from the guest's task) or has failed.
pub async fn run<B>(
    handler: &Handler,
    tenant: &Arc<Tenant>,
    meter: &Arc<AppMeter>,
    guest_cpu: Option<&GuestCpu>,
    request: hyper::Request<B>,
    permit: OwnedSemaphorePermit,
) -> Result<hyper::Response<HyperOutgoingBody>, Failure>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let span = tracing::Span::current();
    let timeout = tenant.limits.timeout;
    let deadline = Instant::now() + timeout;

    let capabilities = RequestCapabilities::new(&tenant.capabilities, &RequestInfo { span: &span })
        .map_err(|e| Failure::Host(format!("{e:#}")))?;
    let state = SandboxState {
        tenant: tenant.clone(),
        capabilities,
        table: ResourceTable::new(),
        calls: CallBudget::new(usize::try_from(tenant.limits.memory).unwrap_or(usize::MAX)),
        memory: MemoryLimit {
            bytes: usize::try_from(tenant.limits.memory).unwrap_or(usize::MAX),
            exceeded: false,
            total: 0,
            peak: 0,
        },
        deadline,
        timed_out: false,
        cpu_share: GuestShare::default(),
        instantiation: None,
    };
    let started = Instant::now();
    let mut store = Store::new(handler.instance_pre().engine(), state);
    store.limiter(|state| &mut state.memory);
    // Every epoch tick a running guest traps if its deadline has passed, else yields its
    // thread (taking turns with its tenant's other busy guests: see `fair_share`).
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let state = ctx.data_mut();
        if Instant::now() >= state.deadline {
            state.timed_out = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(state.tenant.cpu.on_tick(&mut state.cpu_share))
    });

    let (answer, receiver) = oneshot::channel::<Answer>();
    let prepared = prepare(&mut store, handler, request, answer)
        .map_err(|e| Failure::Host(format!("{e:#}")))?;

    // Only a WASI 0.3 body needs to know (see `DrivingBody`).
    let cut_off = matches!(handler, Handler::Http03(_)).then(CutOff::default);
    let guest_cut_off = cut_off.clone();
    let (share, owner) = (store.data().cpu_share.clone(), tenant.clone());
    let guest_share = share.clone();
    let tenant = tenant.clone();
    let meter = meter.counting().then(|| meter.clone());
    let guest_cpu = guest_cpu.cloned();
    let guest = async move {
        let share = guest_share;
        let mut ran = Duration::ZERO;
        // Boxed once here: wasmtime's instantiation and call futures are kilobytes, and every
        // layer below (timing, fair share, the deadline) would otherwise copy them into itself.
        let call = Box::pin(call(&mut store, prepared));
        // Waiting for a CPU slot counts against the deadline like everything else.
        let admitted_call = async {
            tenant.cpu.admit(&share).await;
            share
                .watch_waits(timed(
                    call,
                    meter.is_some().then_some(&mut ran),
                    guest_cpu.as_ref(),
                ))
                .await
        };
        let result = tokio::time::timeout_at(deadline.into(), admitted_call).await;
        let failure = match result {
            Ok(Ok(())) => None,
            Err(_elapsed) => Some(Failure::Timeout(timeout)),
            Ok(Err(e)) => Some(classify(&e, store.data(), timeout)),
        };
        if failure.is_some()
            && let Some(cut_off) = &guest_cut_off
        {
            cut_off.cut_off();
        }
        let report = meter.as_ref().map(|_| {
            let state = store.data();
            Sandboxed {
                instantiation: state.instantiation,
                guest_cpu: ran,
                peak_memory: state.memory.peak as u64,
                lifetime: started.elapsed(),
                moved: share.moved(),
                slot_waits: share.slot_waits(),
                usage: state.capabilities.usage(),
            }
        });
        // The store (and with it every resource the guest held) is dropped here, before the
        // admission permit is released.
        drop(store);
        drop(permit);
        if let (Some(meter), Some(report)) = (meter, report) {
            meter.sandboxed(&report);
        }
        failure
    };
    // Run the guest right here until it either finishes or hands over response headers. Most
    // handlers finish within their first poll, so no task is spawned and no thread woken; a
    // guest still streaming its body after the headers goes on in a task of its own, and one
    // that turns out CPU-bound goes on among the background threads (see `fair_share`).
    let grace_cut_off = cut_off.clone();
    let mut guest = Box::pin(async move {
        let run = owner.cpu.run(&share, Box::pin(guest.in_current_span()));
        tokio::pin!(run);
        // The guest stops itself at its deadline; this one is for a background guest that
        // gets no CPU to do so (ordinary requests keeping every core busy).
        match tokio::time::timeout_at((deadline + DEADLINE_GRACE).into(), &mut run).await {
            Ok(Ok(failure)) => failure,
            Ok(Err(e)) => Some(Failure::Host(format!("the guest's task failed: {e}"))),
            Err(_elapsed) => {
                // Marked before `run`, and the store with it, is dropped.
                if let Some(cut_off) = &grace_cut_off {
                    cut_off.cut_off();
                }
                Some(Failure::Timeout(timeout))
            }
        }
    });
    let mut receiver = receiver;
    tokio::select! {
        biased;
        failure = &mut guest => match receiver.try_recv() {
            Ok(Ok(response)) => {
                if let Some(failure) = failure {
                    tracing::warn!("the guest failed after sending its response headers: {failure:?}");
                }
                let Some(cut_off) = cut_off else {
                    return Ok(response);
                };
                Ok(response.map(|body| DrivingBody::<std::future::Ready<Option<Failure>>> {
                    body,
                    guest: None,
                    cut_off: Some(cut_off),
                    span: tracing::Span::current(),
                }
                .boxed_unsync()))
            }
            Ok(Err(code)) => Err(Failure::GuestError(code)),
            Err(_) => Err(failure.unwrap_or(Failure::NoResponse)),
        },
        response = &mut receiver => {
            let Ok(response) = response else {
                // The sender went with the store: the guest has ended (on another thread, if
                // it was moved there), and its outcome is on its way.
                return Err(guest.await.unwrap_or(Failure::NoResponse));
            };
            // The guest writes the rest of its body as the client reads it: hyper's polls of
            // the body drive it.
            response
                .map(|response| {
                    response.map(|body| {
                        DrivingBody {
                            body,
                            guest: Some(guest),
                            cut_off,
                            span: tracing::Span::current(),
                        }
                        .boxed_unsync()
                    })
                })
                .map_err(Failure::GuestError)
        }
    }
}

/// Set when the guest is stopped (deadline, trap, memory limit) — before its store, and the
/// response body's stream with it, is dropped.
#[derive(Clone, Default)]
struct CutOff(Arc<AtomicBool>);

impl CutOff {
    fn cut_off(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_cut_off(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A guest's response body that also drives the guest writing it: hyper polls the body on the
/// connection's task, so the guest runs there too, rather than in a task of its own on another
/// thread (no task spawned, no thread woken). A guest still running when the body has ended or
/// the client has gone goes on in a task of its own until it ends.
///
/// A WASI 0.3 body (`cut_off` set) whose guest was stopped before it ended the body ends in an
/// error, not cleanly: wasmtime ends a 0.3 body whose guest went away as if it were complete,
/// and the client must be able to tell that it was cut short (HTTP/1.1: no last chunk;
/// HTTP/2: a reset stream). A 0.3 guest that finished its body, went on working past its
/// deadline and was stopped before the client had read the end is reported the same way.
struct DrivingBody<G: Future<Output = Option<Failure>> + Send + 'static> {
    body: HyperOutgoingBody,
    guest: Option<Pin<Box<G>>>,
    cut_off: Option<CutOff>,
    span: tracing::Span,
}

impl<G: Future<Output = Option<Failure>> + Send + 'static> http_body::Body for DrivingBody<G> {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(guest) = this.guest.as_mut()
            && let Poll::Ready(failure) = guest.as_mut().poll(cx)
        {
            this.guest = None;
            if let Some(failure) = failure {
                let _span = this.span.enter();
                tracing::warn!("the guest failed while streaming its response: {failure:?}");
            }
        }
        match std::task::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
            None if this.cut_off.as_ref().is_some_and(CutOff::is_cut_off) => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseIncomplete)))
            }
            frame => Poll::Ready(frame),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream() && !self.cut_off.as_ref().is_some_and(CutOff::is_cut_off)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl<G: Future<Output = Option<Failure>> + Send + 'static> Drop for DrivingBody<G> {
    fn drop(&mut self) {
        let Some(guest) = self.guest.take() else {
            return;
        };
        // Without a runtime (the host shutting down) the guest is dropped, and its store with it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(
                async move {
                    if let Some(failure) = guest.await {
                        tracing::warn!(
                            "the guest failed while streaming its response: {failure:?}"
                        );
                    }
                }
                .instrument(self.span.clone()),
            );
        }
    }
}

/// Makes the request into the resources the guest's handler takes, with `answer` as where its
/// response goes.
fn prepare<B>(
    store: &mut Store<SandboxState>,
    handler: &Handler,
    request: hyper::Request<B>,
    answer: oneshot::Sender<Answer>,
) -> wasmtime::Result<Prepared>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    match handler {
        Handler::Http02(pre) => {
            let mut http = store.data_mut().http();
            let request = http.new_incoming_request(Scheme::Http, request)?;
            let out = http.new_response_outparam_from_callback(move |response| {
                // The receiver is gone when the request has already failed: nothing to tell.
                _ = answer.send(response.map_err(|code| format!("{code:?}")));
            })?;
            Ok(Prepared::Http02 {
                pre: pre.clone(),
                request,
                out,
            })
        }
        Handler::Http03(pre) => {
            // WASI 0.3 hands the guest the URI as is: give it the scheme and authority a
            // WASI 0.2 guest gets (the connection's scheme, the Host header).
            let request = with_full_uri(request)?;
            let (request, request_io) =
                p3::Request::from_http(store.data_mut().http().hooks, request);
            Ok(Prepared::Http03 {
                pre: pre.clone(),
                request,
                request_io: Box::pin(request_io),
                answer,
            })
        }
    }
}

/// The request with scheme `http` and the Host header's authority in its URI, where the
/// client sent a path only.
fn with_full_uri<B>(request: hyper::Request<B>) -> wasmtime::Result<hyper::Request<B>> {
    let (mut parts, body) = request.into_parts();
    if parts.uri.authority().is_none() {
        let host = parts
            .headers
            .get(hyper::header::HOST)
            .ok_or_else(|| wasmtime::format_err!("the request has no Host header"))?
            .to_str()?;
        let mut uri = hyper::http::uri::Builder::new()
            .scheme(hyper::http::uri::Scheme::HTTP)
            .authority(host);
        if let Some(path_and_query) = parts.uri.path_and_query() {
            uri = uri.path_and_query(path_and_query.clone());
        }
        parts.uri = uri.build()?;
    }
    Ok(hyper::Request::from_parts(parts, body))
}

/// Instantiates the guest and calls its handler. Resolves when the guest is done: for WASI
/// 0.3, that is when its last task ends — it may go on writing the body after answering.
async fn call(store: &mut Store<SandboxState>, prepared: Prepared) -> wasmtime::Result<()> {
    match prepared {
        Prepared::Http02 { pre, request, out } => {
            let started = Instant::now();
            let instantiate = pre.instantiate_async(&mut *store);
            let proxy = instantiate.instrument(traces::instantiation()).await?;
            store.data_mut().instantiation = Some(started.elapsed());
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, request, out)
                .instrument(traces::guest())
                .await
        }
        Prepared::Http03 {
            pre,
            request,
            request_io,
            answer,
        } => {
            let started = Instant::now();
            let instantiate = pre.instantiate_async(&mut *store);
            let service = instantiate.instrument(traces::instantiation()).await?;
            store.data_mut().instantiation = Some(started.elapsed());
            store
                .run_concurrent(async move |accessor| -> wasmtime::Result<()> {
                    match service.handle(accessor, request).await? {
                        Ok(response) => {
                            let response = accessor
                                .with(|mut access| response.into_http(&mut access, request_io))?;
                            _ = answer.send(Ok(response));
                        }
                        Err(code) => _ = answer.send(Err(format!("{code:?}"))),
                    }
                    std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                    Ok(())
                })
                .instrument(traces::guest())
                .await?
        }
    }
}

/// Runs `guest`, adding up the time its polls take to `ran` when given, and to `so_far` (the
/// access log's, read while the guest may still run): the time a thread ran the guest (a
/// monotonic clock, read twice a poll; a thread's own CPU clock costs a system call here).
async fn timed<F: Future>(
    guest: F,
    mut ran: Option<&mut Duration>,
    so_far: Option<&GuestCpu>,
) -> F::Output {
    let mut guest = std::pin::pin!(guest);
    std::future::poll_fn(move |cx| {
        if ran.is_none() && so_far.is_none() {
            return guest.as_mut().poll(cx);
        }
        let started = Instant::now();
        let poll = guest.as_mut().poll(cx);
        let took = started.elapsed();
        if let Some(ran) = ran.as_deref_mut() {
            *ran += took;
        }
        if let Some(so_far) = so_far {
            so_far.add(took);
        }
        poll
    })
    .await
}

fn classify(error: &wasmtime::Error, state: &SandboxState, timeout: Duration) -> Failure {
    if state.timed_out || matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return Failure::Timeout(timeout);
    }
    if state.memory.exceeded {
        return Failure::MemoryLimit(format!("{error:#}"));
    }
    if error
        .chain()
        .any(|e| e.is::<wasmtime::PoolConcurrencyLimitError>())
    {
        return Failure::Overloaded(format!("{error:#}"));
    }
    Failure::Trap(format!("{error:?}"))
}
