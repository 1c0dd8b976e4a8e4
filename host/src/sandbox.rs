//! One request, one sandbox: a new `Store` instantiated from the app's pre-instantiated
//! component, limits applied, the guest's `incoming-handler.handle` called, and everything the
//! guest held dropped with the store — after a normal return, a trap or a timeout alike.

use crate::capabilities::shape::{HasView, RequestInfo};
use crate::capabilities::{Parts, RequestCapabilities, StoreData, outbound_http, wasi};
use crate::fair_share::GuestShare;
use crate::tenant::Tenant;
use hyper::body::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::Instrument;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

/// How long past its deadline a request waits for a guest that has not stopped itself.
const DEADLINE_GRACE: Duration = Duration::from_millis(100);

/// The data of a request's `Store`: its tenant, the request-lifetime state of every
/// capability and the resource table they share, and the sandbox's own limits.
pub struct SandboxState {
    tenant: Arc<Tenant>,
    capabilities: RequestCapabilities,
    table: ResourceTable,
    memory: MemoryLimit,
    deadline: Instant,
    timed_out: bool,
    /// Its place in the tenant's share of the workers.
    cpu_share: GuestShare,
}

impl StoreData for SandboxState {
    fn capabilities(&mut self) -> Parts<'_> {
        Parts {
            tenant: &self.tenant.capabilities,
            request: &mut self.capabilities,
            table: &mut self.table,
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

/// Caps each linear memory of the instance and remembers whether the cap was hit, so the
/// resulting trap can be reported as what it is.
struct MemoryLimit {
    bytes: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
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
    /// The guest set an error instead of a response.
    GuestError(ErrorCode),
    /// The guest returned without setting a response.
    NoResponse,
    /// Setting up the sandbox failed: a host problem.
    Host(String),
}

/// Runs an app's guest — `pre`, its pre-instantiated component, for `tenant` — on one
/// request. Resolves once the guest has produced response headers (the body keeps streaming
/// from the guest's task) or has failed.
pub async fn run<B>(
    pre: &ProxyPre<SandboxState>,
    tenant: &Arc<Tenant>,
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
        memory: MemoryLimit {
            bytes: usize::try_from(tenant.limits.memory).unwrap_or(usize::MAX),
            exceeded: false,
        },
        deadline,
        timed_out: false,
        cpu_share: GuestShare::default(),
    };
    let mut store = Store::new(pre.instance_pre().engine(), state);
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

    let (sender, receiver) = oneshot::channel();
    let host_failure = |e: wasmtime::Error| Failure::Host(format!("{e:#}"));
    let req = (store.data_mut().http())
        .new_incoming_request(Scheme::Http, request)
        .map_err(host_failure)?;
    let out = (store.data_mut().http())
        .new_response_outparam(sender)
        .map_err(host_failure)?;

    let (share, owner) = (store.data().cpu_share.clone(), tenant.clone());
    let guest_share = share.clone();
    let (pre, tenant) = (pre.clone(), tenant.clone());
    let guest = async move {
        let share = guest_share;
        let call = async {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        };
        // Waiting for a CPU slot counts against the deadline like everything else.
        let admitted_call = async {
            tenant.cpu.admit(&share).await;
            share.watch_waits(call).await
        };
        let result = tokio::time::timeout_at(deadline.into(), admitted_call).await;
        let failure = match result {
            Ok(Ok(())) => None,
            Err(_elapsed) => Some(Failure::Timeout(timeout)),
            Ok(Err(e)) => Some(classify(&e, store.data(), timeout)),
        };
        // The store (and with it every resource the guest held) is dropped here, before the
        // admission permit is released.
        drop(store);
        drop(permit);
        failure
    };
    // Run the guest right here until it either finishes or hands over response headers. Most
    // handlers finish within their first poll, so no task is spawned and no thread woken; a
    // guest still streaming its body after the headers goes on in a task of its own, and one
    // that turns out CPU-bound goes on among the background threads (see `fair_share`).
    let mut guest = Box::pin(async move {
        let run = owner.cpu.run(&share, Box::pin(guest.in_current_span()));
        // The guest stops itself at its deadline; this one is for a background guest that
        // gets no CPU to do so (ordinary requests keeping every core busy).
        match tokio::time::timeout_at((deadline + DEADLINE_GRACE).into(), run).await {
            Ok(Ok(failure)) => failure,
            Ok(Err(e)) => Some(Failure::Host(format!("the guest's task failed: {e}"))),
            Err(_elapsed) => Some(Failure::Timeout(timeout)),
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
                Ok(response)
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
            tokio::spawn(async move {
                if let Some(failure) = guest.await {
                    tracing::warn!("the guest failed while streaming its response: {failure:?}");
                }
            }.in_current_span());
            response.map_err(Failure::GuestError)
        }
    }
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
