//! Fair share of the worker threads between tenants.
//!
//! Every epoch tick (1 ms) a running guest yields its thread. A guest that ran wasm through
//! a whole tick since it last resumed — not waiting on the host in between — is CPU-bound: to
//! go on it queues, first come, first served, for one of its tenant's CPU slots (all worker
//! threads but one when the host serves several tenants). It keeps the slot through its own
//! yields for a few slices, then queues again; the slot is given back whenever the guest
//! stops to wait on the host, so a slot is never held across I/O. While a tenant has been
//! CPU-bound in the last second, all its guests, new requests included, run on slots. So a
//! tenant running busy loops at full concurrency takes turns on its share of the workers,
//! waiting off the run queue; other tenants' requests — and guests that mostly wait on Redis,
//! PostgreSQL or HTTP — never queue for a slot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::UpdateDeadline;

/// Time slices a CPU-bound guest runs on its slot before it queues again. Handing the slot
/// over wakes the next guest ahead of other tasks, so not at every slice.
const SLICES_PER_TURN: u32 = 10;

/// How long after its last overrun a tenant's new requests keep queueing for a slot.
const BUSY_MEMORY: Duration = Duration::from_secs(1);

/// How many worker threads one tenant's CPU-bound guests may hold at once: all of them when
/// the host serves one tenant, else all but one.
pub fn cpu_slots(tenants: usize) -> usize {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if tenants <= 1 {
        workers
    } else {
        workers.saturating_sub(1).max(1)
    }
}

/// One tenant's share of the workers.
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
    /// The tick at which it last resumed after yielding at a callback (0: never yielded).
    /// Time queued after its own yield is not waiting on the host.
    resumed_at: Arc<AtomicU64>,
}

/// Ticks of the epoch so far; advanced with the engine's epoch by its ticker thread.
static TICKS: AtomicU64 = AtomicU64::new(0);

pub fn tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

impl CpuShare {
    pub fn new(slots: usize) -> CpuShare {
        CpuShare {
            slots: Arc::new(Semaphore::new(slots)),
            busy_until_ms: AtomicU64::new(0),
        }
    }

    /// Called before a request's guest starts: while the tenant has been CPU-bound lately,
    /// waits for a slot and gives it to the guest.
    pub async fn admit(&self, guest: &GuestShare) {
        if !self.busy() {
            return;
        }
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
        let resumed_at = guest.resumed_at.clone();
        let ran_through = {
            let at = resumed_at.load(Ordering::Relaxed);
            at != 0 && TICKS.load(Ordering::Relaxed) <= at + 1
        };
        if !ran_through && !self.busy() {
            // Its first slice, or it waited on the host since it last resumed.
            return yield_turn(guest, false);
        }
        if ran_through {
            let remember = now_ms() + BUSY_MEMORY.as_millis() as u64;
            self.busy_until_ms.fetch_max(remember, Ordering::Relaxed);
        }
        // CPU-bound, or its tenant is: its next slice runs on a slot.
        let held = guest.slot.lock().expect("cpu slot lock").is_some();
        if held && guest.slices_on_slot < SLICES_PER_TURN {
            guest.slices_on_slot += 1;
            return yield_turn(guest, true);
        }
        guest.slices_on_slot = 0;
        drop(guest.slot.lock().expect("cpu slot lock").take());
        let (slots, slot) = (self.slots.clone(), guest.slot.clone());
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                if let Ok(permit) = slots.acquire_owned().await {
                    *slot.lock().expect("cpu slot lock") = Some(permit);
                }
                resumed_at.store(TICKS.load(Ordering::Relaxed).max(1), Ordering::Relaxed);
            }),
        )
    }
}

impl GuestShare {
    /// Runs the guest's `call`, giving back its slot whenever the call stops to wait on the
    /// host.
    pub async fn run<F: Future>(&self, call: F) -> F::Output {
        let (slot, yielding) = (self.slot.clone(), self.yielding.clone());
        let mut call = std::pin::pin!(call);
        std::future::poll_fn(move |cx| {
            let poll = call.as_mut().poll(cx);
            if poll.is_pending() && !yielding.load(Ordering::Relaxed) {
                drop(slot.lock().expect("cpu slot lock").take());
            }
            poll
        })
        .await
    }
}

/// Yields the thread with tokio's yield rather than a bare re-wake — the I/O driver runs
/// first, so requests that arrived meanwhile are seen even while busy guests fill every
/// worker — keeping the guest's slot if `keep_slot`.
fn yield_turn(guest: &GuestShare, keep_slot: bool) -> UpdateDeadline {
    let (yielding, resumed_at) = (guest.yielding.clone(), guest.resumed_at.clone());
    yielding.store(keep_slot, Ordering::Relaxed);
    UpdateDeadline::YieldCustom(
        1,
        Box::pin(async move {
            tokio::task::yield_now().await;
            yielding.store(false, Ordering::Relaxed);
            resumed_at.store(TICKS.load(Ordering::Relaxed).max(1), Ordering::Relaxed);
        }),
    )
}

fn now_ms() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
}
