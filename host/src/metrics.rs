//! What the host counts, for Prometheus (`GET /metrics`, the text exposition format 0.0.4).
//!
//! Every series is labelled by what an operator bills and alerts on — tenant, app, pool,
//! store — and never by anything a client chooses (paths, request ids), so that the number of
//! series stays bounded by the config. The request path never looks a series up: each app,
//! tenant outbound client, pool and store resolves its own handles once, when it is made
//! ([`AppMeter`], [`OutboundMeter`], [`PoolMeter`], [`StoreMeter`]), and a request then costs
//! a few atomic additions. Gauges of what a pool holds are read from the pool when scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// The `Content-Type` of what [`Metrics::render`] writes.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    tenant: String,
    app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    tenant: String,
    app: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    tenant: String,
    app: String,
    answer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    change: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds, from half a millisecond (a hello) to the longest deadlines.
fn seconds() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Seconds, for what takes microseconds to milliseconds (instantiation, guest CPU).
fn short_seconds() -> Histogram {
    Histogram::new([
        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
        0.25, 1.0,
    ])
}

/// Bytes, 64 KiB to 4 GiB by fours: a wasm page to the largest memory limit.
fn bytes() -> Histogram {
    Histogram::new((0..9).map(|i| (65536u64 << (2 * i)) as f64))
}

/// Declares the metric families once each: field, type, how it is made, name, unit, help.
/// Generates [`Metrics`] with one field per family and `Metrics::new`, which registers them.
macro_rules! families {
    ($($field:ident: $type:ty = $make:expr, $name:literal, $unit:expr, $help:literal;)*) => {
        /// The host's metrics: every family, registered once.
        pub struct Metrics {
            registry: Registry,
            started: Instant,
            /// Pools whose connections are counted at each scrape.
            pools: Mutex<Vec<(PoolLabels, Weak<dyn PoolGauges>)>>,
            /// What each app used since the usage ledger last took it, by (tenant, app): one
            /// per app, whatever its versions.
            usage: Mutex<BTreeMap<(String, String), Arc<Usage>>>,
            /// `metrics.enabled`: whether requests are counted (series and usage) at all.
            count_requests: bool,
            $($field: $type,)*
        }

        impl Metrics {
            pub fn new() -> Arc<Metrics> {
                Metrics::counting_requests(true)
            }

            /// `count_requests` false: `metrics.enabled = false`, the requests' series and
            /// usage are not kept; the pools', stores' and code cache's still are.
            pub fn counting_requests(count_requests: bool) -> Arc<Metrics> {
                let mut registry = Registry::with_prefix("hostel");
                registry.register(
                    "build",
                    "The running Hostel build",
                    Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
                );
                $(let $field: $type = $make;)*
                $(match $unit {
                    Some(unit) => registry.register_with_unit($name, $help, unit, $field.clone()),
                    None => registry.register($name, $help, $field.clone()),
                })*
                Arc::new(Metrics {
                    registry,
                    started: Instant::now(),
                    pools: Mutex::new(Vec::new()),
                    usage: Mutex::new(BTreeMap::new()),
                    count_requests,
                    $($field,)*
                })
            }
        }
    };
}

const SECONDS: Option<Unit> = Some(Unit::Seconds);
const BYTES: Option<Unit> = Some(Unit::Bytes);

families! {
    uptime: Gauge<f64, AtomicU64> = Gauge::default(), "uptime", SECONDS,
        "Time since the host started";
    requests: Family<ClassLabels, Counter> = Family::default(), "requests", None,
        "Requests answered, by status class (1xx-5xx)";
    answers: Family<AnswerLabels, Counter> = Family::default(), "host_answers", None,
        "Responses the host made itself instead of the app: not_found, bad_request, too_large, \
         throttled (429), overloaded (503), timeout (504), trap, memory_limit, guest_error, \
         no_response, response_too_large, host_error";
    duration: Histograms<AppLabels> = Family::new_with_constructor(seconds),
        "request_duration", SECONDS, "From a request's arrival to the end of its response body";
    first_byte: Histograms<AppLabels> = Family::new_with_constructor(seconds),
        "time_to_first_byte", SECONDS, "From a request's arrival to its response headers";
    in_flight: Family<AppLabels, Gauge> = Family::default(), "requests_in_flight", None,
        "Requests arrived and not yet fully answered";
    request_bytes: Family<AppLabels, Counter> = Family::default(), "request_body", BYTES,
        "Request body bytes the app read";
    response_bytes: Family<AppLabels, Counter> = Family::default(), "response_body", BYTES,
        "Response body bytes sent";
    instantiation: Histograms<AppLabels> = Family::new_with_constructor(short_seconds),
        "instantiation", SECONDS, "Time to instantiate a request's sandbox";
    guest_cpu: Histograms<AppLabels> = Family::new_with_constructor(short_seconds),
        "guest_cpu", SECONDS,
        "Time the host's threads spent running a request's guest, instantiation included";
    peak_memory: Histograms<AppLabels> = Family::new_with_constructor(bytes),
        "guest_memory_peak", BYTES, "Largest linear memory a request's guest had";
    moved: Family<AppLabels, Counter> = Family::default(), "fair_share_moved", None,
        "Requests whose guest turned out CPU-bound and moved to the background threads";
    slot_waits: Family<AppLabels, Counter> = Family::default(), "fair_share_slot_waits", None,
        "Times a guest queued for one of its tenant's CPU slots";
    outbound_calls: Family<TenantLabels, Counter> = Family::default(), "outbound_requests",
        None, "Outbound HTTP requests guests sent (allowed by the tenant's grants)";
    outbound_errors: Family<TenantLabels, Counter> = Family::default(), "outbound_errors",
        None, "Outbound HTTP requests that were denied or failed";
    outbound_sent: Family<TenantLabels, Counter> = Family::default(), "outbound_sent", BYTES,
        "Outbound request body bytes sent";
    outbound_received: Family<TenantLabels, Counter> = Family::default(), "outbound_received",
        BYTES, "Outbound response body bytes received";
    outbound_connections: Family<TenantLabels, Counter> = Family::default(),
        "outbound_connections_opened", None, "Connections the tenant's outbound client opened";
    pool_in_use: Family<PoolLabels, Gauge> = Family::default(), "pool_connections_in_use",
        None, "Connections lent out";
    pool_idle: Family<PoolLabels, Gauge> = Family::default(), "pool_connections_idle", None,
        "Connections open and free";
    pool_opening: Family<PoolLabels, Gauge> = Family::default(), "pool_connections_opening",
        None, "Connections being opened";
    pool_wait: Histograms<PoolLabels> = Family::new_with_constructor(seconds),
        "pool_acquire_wait", SECONDS, "Time a call waited for a connection";
    pool_errors: Family<PoolLabels, Counter> = Family::default(), "pool_errors", None,
        "Calls that found the pool's server unavailable";
    pool_opened: Family<PoolLabels, Counter> = Family::default(), "pool_connections_opened",
        None, "Connections the pool opened";
    pool_reconnects: Family<PoolLabels, Counter> = Family::default(), "pool_reconnects", None,
        "Connections opened again after a broken one was dropped";
    store_operations: Family<StoreLabels, Counter> = Family::default(), "keyvalue_operations",
        None, "wasi:keyvalue operations, by store";
    store_errors: Family<StoreLabels, Counter> = Family::default(), "keyvalue_errors", None,
        "wasi:keyvalue operations that failed, by store";
    code_cache: Family<OutcomeLabels, Counter> = Family::default(), "code_cache", None,
        "Component loads, by outcome: hit (compiled code from the cache) or miss";
    compile: Histogram = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
        "compile", SECONDS, "Time to compile a component the code cache did not have";
    changes: Family<ChangeLabels, Counter> = Family::default(), "app_changes", None,
        "Changes to the served set through the admin API (or, in cluster mode, from the cluster's \
         deployed set): deploy, swap, remove";
    cluster_revision: Gauge = Gauge::default(), "cluster_manifest_revision", None,
        "Cluster mode: the revision of the cluster's deployed set this host serves";
    cluster_apply_failures: Counter = Counter::default(), "cluster_apply_failures", None,
        "Cluster mode: revisions of the deployed set that did not load on this host (not applied)";
}

/// What a pool holds right now, read when metrics are scraped.
pub trait PoolGauges: Send + Sync {
    /// (lent out, idle) connections.
    fn connections(&self) -> (u64, u64);
}

impl Metrics {
    /// The exposition of every series, gauges read now.
    pub fn render(&self) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        {
            let mut pools = self.pools.lock().expect("pool list lock");
            pools.retain(|(labels, pool)| {
                let Some(pool) = pool.upgrade() else {
                    return false;
                };
                let (in_use, idle) = pool.connections();
                self.pool_in_use
                    .get_or_create(labels)
                    .set(i64::try_from(in_use).unwrap_or(i64::MAX));
                self.pool_idle
                    .get_or_create(labels)
                    .set(i64::try_from(idle).unwrap_or(i64::MAX));
                true
            });
        }
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The handles one app's requests count with.
    pub fn app(self: &Arc<Self>, tenant: &str, app: &str) -> Arc<AppMeter> {
        self.meter(tenant, app, true)
    }

    /// For requests no app took (no route, a malformed Host): counted under empty tenant and
    /// app labels, with no sandbox series (they have no sandbox).
    pub fn unrouted(self: &Arc<Self>) -> Arc<AppMeter> {
        self.meter("", "", false)
    }

    fn meter(self: &Arc<Self>, tenant: &str, app: &str, sandboxed: bool) -> Arc<AppMeter> {
        let labels = AppLabels {
            tenant: tenant.to_string(),
            app: app.to_string(),
        };
        let series = |family: &Histograms<AppLabels>, detached: fn() -> Histogram| {
            if sandboxed {
                family.get_or_create(&labels).clone()
            } else {
                detached()
            }
        };
        Arc::new(AppMeter {
            counting: self.count_requests,
            duration: self.duration.get_or_create(&labels).clone(),
            first_byte: self.first_byte.get_or_create(&labels).clone(),
            in_flight: self.in_flight.get_or_create(&labels).clone(),
            request_bytes: self.request_bytes.get_or_create(&labels).clone(),
            response_bytes: self.response_bytes.get_or_create(&labels).clone(),
            instantiation: series(&self.instantiation, short_seconds),
            guest_cpu: series(&self.guest_cpu, short_seconds),
            peak_memory: series(&self.peak_memory, bytes),
            moved: Default::default(),
            slot_waits: Default::default(),
            classes: Default::default(),
            answers: Default::default(),
            usage: if sandboxed {
                let mut usage = self.usage.lock().expect("usage lock");
                (usage.entry((tenant.to_string(), app.to_string())))
                    .or_default()
                    .clone()
            } else {
                // Requests no app took are no tenant's bill.
                Arc::default()
            },
            metrics: self.clone(),
            labels,
        })
    }

    pub fn outbound(&self, tenant: &str) -> OutboundMeter {
        let labels = TenantLabels {
            tenant: tenant.to_string(),
        };
        OutboundMeter {
            calls: self.outbound_calls.get_or_create(&labels).clone(),
            errors: self.outbound_errors.get_or_create(&labels).clone(),
            sent: self.outbound_sent.get_or_create(&labels).clone(),
            received: self.outbound_received.get_or_create(&labels).clone(),
            connections: self.outbound_connections.get_or_create(&labels).clone(),
        }
    }

    /// The handles a pool counts with; `gauges` is read at each scrape while it lives.
    pub fn pool(&self, name: &str) -> PoolMeter {
        let labels = PoolLabels {
            pool: name.to_string(),
        };
        PoolMeter {
            wait: self.pool_wait.get_or_create(&labels).clone(),
            errors: self.pool_errors.get_or_create(&labels).clone(),
            opened: self.pool_opened.get_or_create(&labels).clone(),
            reconnects: self.pool_reconnects.get_or_create(&labels).clone(),
            opening: self.pool_opening.get_or_create(&labels).clone(),
            labels,
        }
    }

    /// Counts `pool`'s connections at each scrape, while it lives.
    pub fn watch_pool(&self, meter: &PoolMeter, pool: Weak<dyn PoolGauges>) {
        let mut pools = self.pools.lock().expect("pool list lock");
        pools.push((meter.labels.clone(), pool));
    }

    pub fn store(&self, name: &str) -> StoreMeter {
        let labels = StoreLabels {
            store: name.to_string(),
        };
        StoreMeter {
            operations: self.store_operations.get_or_create(&labels).clone(),
            errors: self.store_errors.get_or_create(&labels).clone(),
        }
    }

    /// A component load: from the code cache, or compiled (taking `compiled` long).
    pub fn code_loaded(&self, compiled: Option<Duration>) {
        let outcome = if compiled.is_some() { "miss" } else { "hit" };
        self.code_cache
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        if let Some(took) = compiled {
            self.compile.observe(took.as_secs_f64());
        }
    }

    /// `change`: `deploy` (a new app), `swap` (a new version of one) or `remove`.
    pub fn app_changed(&self, change: &'static str) {
        self.changes.get_or_create(&ChangeLabels { change }).inc();
    }

    pub fn cluster_revision(&self, revision: u64) {
        self.cluster_revision.set(revision as i64);
    }

    pub fn cluster_apply_failed(&self) {
        self.cluster_apply_failures.inc();
    }
}

/// What a request's host answer was, when the host made the response itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAnswer {
    NotFound,
    BadRequest,
    TooLarge,
    Throttled,
    Overloaded,
    Timeout,
    Trap,
    MemoryLimit,
    GuestError,
    NoResponse,
    ResponseTooLarge,
    HostError,
}

impl HostAnswer {
    const ALL: usize = 12;

    fn label(self) -> &'static str {
        match self {
            HostAnswer::NotFound => "not_found",
            HostAnswer::BadRequest => "bad_request",
            HostAnswer::TooLarge => "too_large",
            HostAnswer::Throttled => "throttled",
            HostAnswer::Overloaded => "overloaded",
            HostAnswer::Timeout => "timeout",
            HostAnswer::Trap => "trap",
            HostAnswer::MemoryLimit => "memory_limit",
            HostAnswer::GuestError => "guest_error",
            HostAnswer::NoResponse => "no_response",
            HostAnswer::ResponseTooLarge => "response_too_large",
            HostAnswer::HostError => "host_error",
        }
    }
}

/// One app's series (shared by its versions: a swap keeps counting in the same ones) and
/// its usage since the last flush.
pub struct AppMeter {
    /// `metrics.enabled`: off, a request costs nothing here.
    counting: bool,
    metrics: Arc<Metrics>,
    labels: AppLabels,
    duration: Histogram,
    first_byte: Histogram,
    in_flight: Gauge,
    request_bytes: Counter,
    response_bytes: Counter,
    instantiation: Histogram,
    guest_cpu: Histogram,
    peak_memory: Histogram,
    /// Made on first use: most apps never see most classes and answers.
    moved: OnceLock<Counter>,
    slot_waits: OnceLock<Counter>,
    classes: [OnceLock<Counter>; 5],
    answers: [OnceLock<Counter>; HostAnswer::ALL],
    usage: Arc<Usage>,
}

/// Declares what usage counts, once: the running totals ([`Usage`], atomics) and what the
/// usage ledger takes from them and stores ([`Amounts`]), field for field.
macro_rules! usage {
    ($($field:ident: $doc:literal,)*) => {
        /// What a tenant's app used since the usage ledger last took it (see
        /// [`crate::usage`]).
        #[derive(Default)]
        pub struct Usage {
            $(#[doc = $doc] $field: AtomicU64,)*
        }

        /// Amounts of usage: taken from [`Usage`], added up per hour by the ledger.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Amounts {
            $(#[doc = $doc] pub $field: u64,)*
        }

        impl Usage {
            /// Takes what was counted, leaving zero.
            fn take(&self) -> Amounts {
                Amounts { $($field: self.$field.swap(0, Ordering::Relaxed),)* }
            }

            /// Puts back what a failed flush took.
            fn give_back(&self, amounts: &Amounts) {
                $(add(&self.$field, amounts.$field);)*
            }
        }

        impl Amounts {
            pub const FIELDS: &[&str] = &[$(stringify!($field)),*];

            pub fn is_zero(&self) -> bool {
                *self == Amounts::default()
            }

            pub fn add(&mut self, other: &Amounts) {
                $(self.$field = self.$field.saturating_add(other.$field);)*
            }

            /// The amounts in [`Amounts::FIELDS`] order.
            pub fn to_array(&self) -> Vec<u64> {
                vec![$(self.$field),*]
            }

            /// From [`Amounts::to_array`]'s order; missing fields (an older ledger) are zero.
            pub fn from_array(values: &[u64]) -> Amounts {
                let mut values = values.iter().copied();
                Amounts { $($field: values.next().unwrap_or(0),)* }
            }
        }
    };
}

usage! {
    requests: "Requests answered.",
    guest_cpu_ns: "Time the guests ran, in ns.",
    memory_mib_ms: "Peak linear memory × the time each sandbox lived, in MiB·ms.",
    bytes_in: "Request body bytes the guests read.",
    bytes_out: "Response body bytes sent.",
    outbound_calls: "Outbound HTTP requests sent.",
    pool_ns: "Time calls held or waited for pooled connections, in ns.",
}

impl Metrics {
    /// Takes every app's usage since the last call, leaving zero: (tenant, app, amounts),
    /// apps that used nothing left out.
    pub fn take_usage(&self) -> Vec<(String, String, Amounts)> {
        let usage = self.usage.lock().expect("usage lock");
        usage
            .iter()
            .map(|((tenant, app), usage)| (tenant.clone(), app.clone(), usage.take()))
            .filter(|(_, _, amounts)| !amounts.is_zero())
            .collect()
    }

    /// Puts back usage a failed flush took, to be flushed next time.
    pub fn give_back_usage(&self, taken: &[(String, String, Amounts)]) {
        let mut usage = self.usage.lock().expect("usage lock");
        for (tenant, app, amounts) in taken {
            (usage.entry((tenant.clone(), app.clone())))
                .or_default()
                .give_back(amounts);
        }
    }
}

/// The time one request's calls held or waited for pooled connections, for its tenant's
/// bill. Its clock is made when the guest first opens a pool: a request that uses none pays
/// nothing for it.
#[derive(Default)]
pub struct PoolTime(Option<PoolClock>);

impl PoolTime {
    /// The clock a handle the guest opens times its calls with.
    pub fn clock(&mut self) -> PoolClock {
        self.0.get_or_insert_with(PoolClock::default).clone()
    }

    pub fn total(&self) -> Duration {
        self.0.as_ref().map_or(Duration::ZERO, |clock| {
            Duration::from_nanos(clock.0.load(Ordering::Relaxed))
        })
    }
}

/// Adds up the time of every [`PoolTimer`] it starts.
#[derive(Clone, Default)]
pub struct PoolClock(Arc<AtomicU64>);

impl PoolClock {
    /// Counts from now until the timer is dropped: a call, or a lease's whole life.
    pub fn start(&self) -> PoolTimer {
        PoolTimer {
            clock: self.clone(),
            started: Instant::now(),
        }
    }
}

pub struct PoolTimer {
    clock: PoolClock,
    started: Instant,
}

impl Drop for PoolTimer {
    fn drop(&mut self) {
        let ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.clock.0.fetch_add(ns, Ordering::Relaxed);
    }
}

/// The time one request's guest has run so far, for its access log line (made when the
/// response's head is ready: all of it for a guest that has answered, which most have).
#[derive(Clone, Default)]
pub struct GuestCpu(Arc<AtomicU64>);

impl GuestCpu {
    /// The guest ran `took` more (at least 1 ns counts: 0 means it never ran).
    pub fn add(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.0.fetch_add(ns, Ordering::Relaxed);
    }

    /// What the guest ran so far, if it ran at all.
    pub fn so_far(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

/// What one request used of the capabilities (see `Capability::usage`).
#[derive(Debug, Default)]
pub struct RequestUsage {
    pub outbound_calls: u64,
    /// Time its calls held (or waited for) pooled connections.
    pub pool_time: Duration,
}

/// What a finished sandbox reports.
pub struct Sandboxed {
    pub instantiation: Option<Duration>,
    pub guest_cpu: Duration,
    pub peak_memory: u64,
    pub lifetime: Duration,
    pub moved: bool,
    pub slot_waits: u32,
    pub usage: RequestUsage,
}

impl Sandboxed {
    /// Peak memory × lifetime in MiB·ms: a 4 GiB guest for 30 s is 1.2e8, so a u64 holds
    /// centuries of it.
    fn memory_mib_ms(&self) -> u64 {
        let mib = self.peak_memory.div_ceil(1 << 20);
        mib.saturating_mul(self.lifetime.as_millis().max(1) as u64)
    }
}

impl AppMeter {
    /// Whether requests are counted (`metrics.enabled`).
    pub fn counting(&self) -> bool {
        self.counting
    }

    /// A request arrived: counted in flight until the returned guard is dropped (nothing,
    /// when requests are not counted).
    pub fn arrived(self: &Arc<Self>) -> Option<InFlight> {
        if !self.counting {
            return None;
        }
        self.in_flight.inc();
        Some(InFlight {
            meter: self.clone(),
            arrived: Instant::now(),
        })
    }

    /// The host answered the request itself, as `answer`.
    pub fn host_answered(&self, answer: HostAnswer) {
        self.answers[answer as usize]
            .get_or_init(|| {
                let labels = AnswerLabels {
                    tenant: self.labels.tenant.clone(),
                    app: self.labels.app.clone(),
                    answer: answer.label(),
                };
                self.metrics.answers.get_or_create(&labels).clone()
            })
            .inc();
    }

    /// The request's sandbox is gone.
    pub fn sandboxed(&self, run: &Sandboxed) {
        if let Some(took) = run.instantiation {
            self.instantiation.observe(took.as_secs_f64());
        }
        self.guest_cpu.observe(run.guest_cpu.as_secs_f64());
        self.peak_memory.observe(run.peak_memory as f64);
        if run.moved {
            self.moved
                .get_or_init(|| self.metrics.moved.get_or_create(&self.labels).clone())
                .inc();
        }
        if run.slot_waits > 0 {
            self.slot_waits
                .get_or_init(|| self.metrics.slot_waits.get_or_create(&self.labels).clone())
                .inc_by(u64::from(run.slot_waits));
        }
        let usage = &self.usage;
        add(&usage.guest_cpu_ns, run.guest_cpu.as_nanos() as u64);
        add(&usage.memory_mib_ms, run.memory_mib_ms());
        add(&usage.outbound_calls, run.usage.outbound_calls);
        add(&usage.pool_ns, run.usage.pool_time.as_nanos() as u64);
    }

    /// The app read `bytes` of the request body.
    pub fn read(&self, bytes: u64) {
        if bytes > 0 {
            self.request_bytes.inc_by(bytes);
            add(&self.usage.bytes_in, bytes);
        }
    }
}

fn add(counter: &AtomicU64, value: u64) {
    if value > 0 {
        counter.fetch_add(value, Ordering::Relaxed);
    }
}

/// A request in flight; dropped when its response body has ended (or the client left).
pub struct InFlight {
    meter: Arc<AppMeter>,
    arrived: Instant,
}

impl InFlight {
    /// Response headers are ready, with `status`.
    pub fn headers(&self, status: u16) {
        let meter = &*self.meter;
        meter
            .first_byte
            .observe(self.arrived.elapsed().as_secs_f64());
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        meter.classes[class]
            .get_or_init(|| {
                let labels = ClassLabels {
                    tenant: meter.labels.tenant.clone(),
                    app: meter.labels.app.clone(),
                    class: ["1xx", "2xx", "3xx", "4xx", "5xx"][class],
                };
                meter.metrics.requests.get_or_create(&labels).clone()
            })
            .inc();
        add(&meter.usage.requests, 1);
    }

    /// The response body ended (or was abandoned) after `bytes`.
    pub fn finished(self, bytes: u64) {
        let meter = &self.meter;
        if bytes > 0 {
            meter.response_bytes.inc_by(bytes);
            add(&meter.usage.bytes_out, bytes);
        }
        // The duration is observed on drop.
    }

    pub fn meter(&self) -> &Arc<AppMeter> {
        &self.meter
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.meter.in_flight.dec();
        self.meter
            .duration
            .observe(self.arrived.elapsed().as_secs_f64());
    }
}

/// Where a body's byte count goes when it is dropped.
pub enum BodyMeter {
    /// What an app read of its request.
    Request(Arc<AppMeter>),
    /// What a response sent; ends the request's time in flight.
    Response(InFlight),
}

impl BodyMeter {
    pub fn ended(self, bytes: u64) {
        match self {
            BodyMeter::Request(meter) => meter.read(bytes),
            BodyMeter::Response(in_flight) => in_flight.finished(bytes),
        }
    }
}

/// One tenant's outbound HTTP series.
#[derive(Clone)]
pub struct OutboundMeter {
    pub calls: Counter,
    pub errors: Counter,
    pub sent: Counter,
    pub received: Counter,
    pub connections: Counter,
}

impl OutboundMeter {
    /// A call was denied or failed.
    pub fn failed(&self) {
        self.errors.inc();
    }
}

/// One pool's series.
#[derive(Clone)]
pub struct PoolMeter {
    labels: PoolLabels,
    wait: Histogram,
    errors: Counter,
    opened: Counter,
    reconnects: Counter,
    opening: Gauge,
}

impl PoolMeter {
    /// A call found the server unavailable.
    pub fn failed(&self) {
        self.errors.inc();
    }
    /// A call got a connection (or gave up) after waiting `waited`.
    pub fn waited(&self, waited: Duration) {
        self.wait.observe(waited.as_secs_f64());
    }

    /// A connection is being opened until the guard is dropped; `again` when it replaces one
    /// that broke.
    pub fn opening(&self, again: bool) -> Opening {
        self.opening.inc();
        self.opened.inc();
        if again {
            self.reconnects.inc();
        }
        Opening(self.opening.clone())
    }
}

/// A connection being opened (see [`PoolMeter::opening`]).
pub struct Opening(Gauge);

impl Drop for Opening {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One key-value store's series.
#[derive(Clone)]
pub struct StoreMeter {
    operations: Counter,
    errors: Counter,
}

impl StoreMeter {
    /// Counts an operation and, if it failed, an error; hands `outcome` on.
    pub fn count<T, E>(&self, outcome: Result<T, E>) -> Result<T, E> {
        self.operations.inc();
        if outcome.is_err() {
            self.errors.inc();
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_counts_in_its_own_series_and_a_swap_in_the_same_ones() {
        let metrics = Metrics::new();
        let first = metrics.app("acme", "shop");
        let request = first.arrived().unwrap();
        request.headers(200);
        request.finished(5);
        let swapped = metrics.app("acme", "shop");
        swapped.arrived().unwrap().headers(503);
        swapped.host_answered(HostAnswer::Overloaded);
        let text = metrics.render();
        for line in [
            "hostel_requests_total{tenant=\"acme\",app=\"shop\",class=\"2xx\"} 1",
            "hostel_requests_total{tenant=\"acme\",app=\"shop\",class=\"5xx\"} 1",
            "hostel_host_answers_total{tenant=\"acme\",app=\"shop\",answer=\"overloaded\"} 1",
            "hostel_response_body_bytes_total{tenant=\"acme\",app=\"shop\"} 5",
            "hostel_requests_in_flight{tenant=\"acme\",app=\"shop\"} 0",
            "hostel_request_duration_seconds_count{tenant=\"acme\",app=\"shop\"} 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_pools_connections_are_read_when_scraped_and_forgotten_when_it_goes() {
        struct Fixed;
        impl PoolGauges for Fixed {
            fn connections(&self) -> (u64, u64) {
                (3, 2)
            }
        }
        let metrics = Metrics::new();
        let meter = metrics.pool("cache");
        let pool: Arc<dyn PoolGauges> = Arc::new(Fixed);
        metrics.watch_pool(&meter, Arc::downgrade(&pool));
        let text = metrics.render();
        assert!(text.contains("hostel_pool_connections_in_use{pool=\"cache\"} 3"));
        assert!(text.contains("hostel_pool_connections_idle{pool=\"cache\"} 2"));
        drop(pool);
        metrics.render();
        assert!(metrics.pools.lock().unwrap().is_empty());
    }
}
