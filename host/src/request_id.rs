//! Request ids: unique within a process and unlikely to repeat across restarts, cheap to make.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    boot: u32,
    seq: u64,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

impl RequestId {
    pub fn next() -> RequestId {
        static BOOT: OnceLock<u32> = OnceLock::new();
        let boot = *BOOT.get_or_init(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (now.as_secs() as u32) ^ now.subsec_nanos().rotate_left(16) ^ std::process::id()
        });
        RequestId {
            boot,
            seq: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{:x}", self.boot, self.seq)
    }
}
