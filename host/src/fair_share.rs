//! Fair share of the worker threads between tenants.
//!
//! Every epoch tick (1 ms) a running guest yields its thread. A guest that ran wasm through
//! two ticks in a row — not waiting on the host in between — is CPU-bound: it goes on only
//! while it holds one of its tenant's CPU slots (all workers but one when the host serves
//! several tenants) and gives the slot back every few slices, or when it next waits, to queue
//! for it again, first come, first served. While a tenant has been CPU-bound lately, its new
//! requests also queue for a slot before they start, instead of each taking a worker for a
//! first slice. So a tenant running busy loops at full concurrency takes turns on its share of
//! the workers, waiting off the run queue; other tenants' requests — and guests that mostly
//! wait on Redis, PostgreSQL or HTTP — never queue for a slot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::UpdateDeadline;

/// Time slices a CPU-bound guest runs on its slot before it queues again.
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
    /// Until when (ms since `origin()`) the tenant counts as CPU-bound.
    busy_until_ms: AtomicU64,
}

/// The slot a guest holds, if any; shared with the futures that queue for one.
pub type Slot = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

/// A guest's place in its tenant's share: the slot it holds and how long it has held it.
#[derive(Default)]
pub struct GuestShare {
    slot: Slot,
    slices_on_slot: u32,
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
        if now_ms() >= self.busy_until_ms.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(permit) = self.slots.clone().acquire_owned().await {
            *guest.slot.lock().expect("cpu slot lock") = Some(permit);
        }
    }

    /// What a guest does at an epoch tick (its deadline not yet passed).
    pub fn on_tick(&self, guest: &mut GuestShare) -> UpdateDeadline {
        let resumed_at = guest.resumed_at.load(Ordering::Relaxed);
        let ran_through = resumed_at != 0 && TICKS.load(Ordering::Relaxed) <= resumed_at + 1;
        let held = guest.slot.lock().expect("cpu slot lock").is_some();
        if !ran_through {
            if resumed_at != 0 {
                // It waited on the host since it last resumed: not CPU-bound, no slot needed.
                guest.slices_on_slot = 0;
                drop(guest.slot.lock().expect("cpu slot lock").take());
            }
            // Its first slice (on the slot it was admitted with, if any), or it waited.
            return self.yield_now(guest);
        }
        let remember = now_ms() + BUSY_MEMORY.as_millis() as u64;
        self.busy_until_ms.fetch_max(remember, Ordering::Relaxed);
        if held && guest.slices_on_slot < SLICES_PER_TURN {
            guest.slices_on_slot += 1;
            return self.yield_now(guest);
        }
        guest.slices_on_slot = 0;
        drop(guest.slot.lock().expect("cpu slot lock").take());
        let (slots, slot) = (self.slots.clone(), guest.slot.clone());
        let resumed_at = guest.resumed_at.clone();
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

    /// tokio's yield, not a bare re-wake: the I/O driver runs first, so requests that
    /// arrived meanwhile are seen even while busy guests fill every worker.
    fn yield_now(&self, guest: &GuestShare) -> UpdateDeadline {
        let resumed_at = guest.resumed_at.clone();
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                resumed_at.store(TICKS.load(Ordering::Relaxed).max(1), Ordering::Relaxed);
            }),
        )
    }
}

fn now_ms() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
}
