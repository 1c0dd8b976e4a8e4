//! Fair share of the CPU between tenants.
//!
//! Every epoch tick (1 ms) a running guest yields its thread. A guest that, twice in a row,
//! used most of a tick's CPU time between resuming from such a yield and the next tick,
//! without waiting on the host, is CPU-bound. From then on it runs on the background threads:
//! one per core, at nice 10 with the kernel's shortest time slice, so that any other
//! request's thread preempts them within 0.1 ms instead of waiting out a time slice behind a
//! busy loop. CPU time, not wall time, decides: a guest whose thread the kernel preempted is
//! not CPU-bound for it. Moving a guest is cheap: its store and fiber are in one boxed
//! future, handed from the request's task to a background task between two polls.
//!
//! Among themselves CPU-bound guests take turns per tenant: to go on, one queues, first come,
//! first served, for one of its tenant's CPU slots (one per core, or all cores but one when
//! the host serves several tenants). It keeps the slot through
//! its own yields for a few slices, then queues again; the slot is given back whenever the
//! guest stops to wait on the host, so a slot is never held across I/O. While a tenant has
//! been CPU-bound in the last second, its new requests start on the background threads too.
//! So a tenant running busy loops at full concurrency gets the CPU time other requests leave
//! (and, on a saturated host, still some of it), shared fairly with other such tenants;
//! other tenants' requests — and guests that mostly wait on Redis, PostgreSQL or HTTP — never
//! queue behind it.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinError;
use wasmtime::UpdateDeadline;

/// Time slices a CPU-bound guest runs on its slot before it queues again. Handing the slot
/// over wakes the next guest ahead of other tasks, so not at every slice.
const SLICES_PER_TURN: u32 = 10;

/// How long after its last overrun a tenant's new requests keep queueing for a slot.
const BUSY_MEMORY: Duration = Duration::from_secs(1);

/// One background thread per core.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How many background threads one tenant's CPU-bound guests may hold at once: all of them
/// when the host serves one tenant, else all but one, so that other tenants' CPU-bound
/// guests, and the request threads, always find a core free of this one's.
pub fn cpu_slots(tenants: usize) -> usize {
    if tenants <= 1 {
        cores()
    } else {
        cores().saturating_sub(1).max(1)
    }
}

/// One tenant's share of the background threads.
pub struct CpuShare {
    slots: Arc<Semaphore>,
    /// Until when (ms since the first use of `now_ms`) the tenant counts as CPU-bound.
    busy_until_ms: AtomicU64,
}

/// The slot a guest holds, if any; shared with the futures that queue for one.
type Slot = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

/// A guest's place in its tenant's share (clones share it).
#[derive(Default, Clone)]
pub struct GuestShare {
    slot: Slot,
    slices_on_slot: u32,
    /// Set while the guest yields at a tick keeping its slot.
    yielding: Arc<AtomicBool>,
    /// Its thread's CPU time (ns) when it last resumed after yielding at a tick; 0 before its
    /// first yield (the first slice includes instantiation, so never counts).
    resumed_cpu: Arc<AtomicU64>,
    /// Set when it stops to wait on the host after resuming: its thread's CPU time since then
    /// is not all its own, and it is not CPU-bound in this slice.
    waited: Arc<AtomicBool>,
    /// Slices in a row, up to now, in which it was busy for most of the slice.
    busy_slices: u32,
    /// Told when the guest turns out CPU-bound: time to move it to the background threads.
    cpu_bound: Arc<Notify>,
    /// What happened to it, for its app's metrics.
    counts: Arc<ShareCounts>,
}

#[derive(Default)]
struct ShareCounts {
    moved: AtomicBool,
    slot_waits: AtomicU32,
}

/// CPU time, from resuming after a tick to the next, after which a guest counts as CPU-bound:
/// most of a 1 ms tick.
const CPU_BOUND_NS: u64 = 800_000;

/// Busy slices in a row after which a guest is CPU-bound. Two, so that an ordinary request of
/// a large guest (a Python handler: 1.5–2 ms of CPU, instantiation included) is not moved
/// around: moving costs it its warm caches.
const BUSY_SLICES: u32 = 2;

impl CpuShare {
    /// `slots`: see [`cpu_slots`].
    pub fn new(slots: usize) -> CpuShare {
        CpuShare {
            slots: Arc::new(Semaphore::new(slots)),
            busy_until_ms: AtomicU64::new(0),
        }
    }

    /// Runs a guest to its end: on the calling task while it is an ordinary request, on the
    /// background threads once it (or, lately, its tenant) is CPU-bound. Dropping the
    /// returned future drops the guest wherever it runs.
    pub async fn run<T: Send + 'static>(
        &self,
        guest: &GuestShare,
        mut call: Pin<Box<dyn Future<Output = T> + Send>>,
    ) -> Result<T, JoinError> {
        if !self.busy() {
            tokio::select! {
                biased;
                done = &mut call => return Ok(done),
                () = guest.cpu_bound.notified() => {}
            }
        }
        guest.counts.moved.store(true, Ordering::Relaxed);
        let mut task = AbortOnDrop(background().spawn(call));
        (&mut task.0).await
    }

    /// Called before a request's guest starts: while the tenant has been CPU-bound lately,
    /// waits for a slot and gives it to the guest.
    pub async fn admit(&self, guest: &GuestShare) {
        if !self.busy() {
            return;
        }
        guest.counts.slot_waits.fetch_add(1, Ordering::Relaxed);
        if let Ok(permit) = self.slots.clone().acquire_owned().await {
            *guest.slot.lock().expect("cpu slot lock") = Some(permit);
        }
    }

    /// Whether the tenant has been CPU-bound lately.
    fn busy(&self) -> bool {
        now_ms() < self.busy_until_ms.load(Ordering::Relaxed)
    }

    /// What a guest does at an epoch tick (its deadline not yet passed).
    pub fn on_tick(&self, guest: &mut GuestShare) -> UpdateDeadline {
        let resumed = guest.resumed_cpu.load(Ordering::Relaxed);
        let busy_slice = resumed != 0
            && !guest.waited.load(Ordering::Relaxed)
            && thread_cpu_ns().saturating_sub(resumed) >= CPU_BOUND_NS;
        guest.busy_slices = if busy_slice { guest.busy_slices + 1 } else { 0 };
        let ran_through = guest.busy_slices >= BUSY_SLICES;
        if !ran_through && !self.busy() {
            // Its first slice, or it waited on the host (or the kernel preempted it).
            return yield_turn(guest, false);
        }
        if ran_through {
            let remember = now_ms() + BUSY_MEMORY.as_millis() as u64;
            self.busy_until_ms.fetch_max(remember, Ordering::Relaxed);
            guest.cpu_bound.notify_one();
        }
        // CPU-bound, or its tenant is: its next slice runs on a slot.
        let held = guest.slot.lock().expect("cpu slot lock").is_some();
        if held && guest.slices_on_slot < SLICES_PER_TURN {
            guest.slices_on_slot += 1;
            return yield_turn(guest, true);
        }
        guest.slices_on_slot = 0;
        drop(guest.slot.lock().expect("cpu slot lock").take());
        let (slots, slot, resumed) = (self.slots.clone(), guest.slot.clone(), guest.resumed());
        guest.counts.slot_waits.fetch_add(1, Ordering::Relaxed);
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                if let Ok(permit) = slots.acquire_owned().await {
                    *slot.lock().expect("cpu slot lock") = Some(permit);
                }
                resumed();
            }),
        )
    }
}

impl GuestShare {
    /// Whether it moved to the background threads.
    pub fn moved(&self) -> bool {
        self.counts.moved.load(Ordering::Relaxed)
    }

    /// How many times it queued for a CPU slot.
    pub fn slot_waits(&self) -> u32 {
        self.counts.slot_waits.load(Ordering::Relaxed)
    }

    /// Polls the guest's `call`, noting each time it stops to wait on the host: it gives back
    /// its slot then, and that slice does not count as CPU-bound. (Where the guest runs is
    /// [`CpuShare::run`]'s business.)
    pub async fn watch_waits<F: Future>(&self, call: F) -> F::Output {
        let (slot, yielding, waited) = (
            self.slot.clone(),
            self.yielding.clone(),
            self.waited.clone(),
        );
        let mut call = std::pin::pin!(call);
        std::future::poll_fn(move |cx| {
            let poll = call.as_mut().poll(cx);
            if poll.is_pending() && !yielding.load(Ordering::Relaxed) {
                drop(slot.lock().expect("cpu slot lock").take());
                waited.store(true, Ordering::Relaxed);
            }
            poll
        })
        .await
    }

    /// What a guest's yield does last, on the thread it resumes on: notes the thread's CPU
    /// time, from which the next tick judges whether it is CPU-bound. (Read only here and at
    /// ticks: on this machine the clock costs a system call, too much for every poll.)
    fn resumed(&self) -> impl FnOnce() + Send + 'static {
        let (resumed_cpu, waited) = (self.resumed_cpu.clone(), self.waited.clone());
        move || {
            waited.store(false, Ordering::Relaxed);
            resumed_cpu.store(thread_cpu_ns().max(1), Ordering::Relaxed);
        }
    }
}

/// Yields the thread with tokio's yield rather than a bare re-wake — the I/O driver runs
/// first, so requests that arrived meanwhile are seen even while busy guests fill every
/// worker — keeping the guest's slot if `keep_slot`.
fn yield_turn(guest: &GuestShare, keep_slot: bool) -> UpdateDeadline {
    let (yielding, resumed) = (guest.yielding.clone(), guest.resumed());
    yielding.store(keep_slot, Ordering::Relaxed);
    UpdateDeadline::YieldCustom(
        1,
        Box::pin(async move {
            tokio::task::yield_now().await;
            yielding.store(false, Ordering::Relaxed);
            resumed();
        }),
    )
}

/// Aborts a background guest when the request waiting for it goes away (the client left).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The background threads CPU-bound guests run on, started on first need.
fn background() -> &'static Handle {
    static BACKGROUND: OnceLock<Runtime> = OnceLock::new();
    BACKGROUND
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cores())
                .thread_name("hostel-cpubound")
                .on_thread_start(background_priority)
                .enable_all()
                .build()
                .expect("cannot start the threads for CPU-bound guests")
        })
        .handle()
}

/// Gives the calling thread nice 10 and the shortest time slice the kernel allows (0.1 ms;
/// EEVDF kernels, 6.6 and later, honour it): a request's thread that wakes preempts it
/// within 0.1 ms, and against busy ordinary threads it gets about a tenth of a core — less
/// than its share, never nothing. (`SCHED_IDLE` and nice 19 keep other tenants' tail latency
/// lower still, but starve CPU-bound guests whenever anything else keeps the cores busy;
/// nice 0 and 5 leave other tenants at 4–6× their idle p99: `bench/run fairness`.) Lowering
/// one's own priority needs no privilege.
fn background_priority() {
    #[cfg(target_os = "linux")]
    {
        /// `struct sched_attr`, version 0 (sched(7)).
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        let attr = SchedAttr {
            size: size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            flags: 0,
            nice: 10,
            priority: 0,
            // The time slice in ns; kernels before 6.6 ignore it.
            runtime: 100_000,
            deadline: 0,
            period: 0,
        };
        // SAFETY: sched_setattr(2) on the calling thread (0) with a valid version-0 attr.
        let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) };
        if set != 0 {
            tracing::warn!(
                "cannot lower the priority of the threads for CPU-bound guests: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes into the valid timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn now_ms() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
}
