//! One budget for message bytes held in memory at once by the stages after
//! accept that must hold a message whole — review and the archive (delivery
//! sends a big message from its file) — so a burst of big mail is
//! taken a few messages at a time instead of all at once (ten 45 MB
//! messages read by ten deliveries and ten reviews at the same moment cost
//! about 500 MB before this; see bench/bigmail.py). Small messages barely
//! touch it; a big one (over [`BIG`]) takes all of it, so big messages
//! pass through the stages one at a time: reviewing or archiving one costs
//! two to three times its size (parsed parts, extracted text, the index
//! document), more than the budget would suggest.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget: about one big message's worth.
pub const MESSAGE_MEMORY: u64 = 64 << 20;
/// Messages over this size hold the whole budget.
pub const BIG: u64 = 4 << 20;
/// Permits count KiB, so a budget fits a semaphore's u32.
const UNIT: u64 = 1024;

#[derive(Clone)]
pub struct MessageMemory {
    permits: Arc<Semaphore>,
    total: u32,
}

impl Default for MessageMemory {
    fn default() -> Self {
        MessageMemory::new(MESSAGE_MEMORY)
    }
}

impl MessageMemory {
    pub fn new(bytes: u64) -> MessageMemory {
        let total = (bytes / UNIT).clamp(1, u32::MAX as u64) as u32;
        MessageMemory { permits: Arc::new(Semaphore::new(total as usize)), total }
    }

    /// Waits until `size` bytes (the whole budget for a big message) may be
    /// held; they are given back when the guard drops.
    pub async fn hold(&self, size: u64) -> Held {
        let n = if size > BIG { self.total } else { (size.div_ceil(UNIT)).clamp(1, self.total as u64) as u32 };
        // The semaphore is never closed.
        Held(self.permits.clone().acquire_many_owned(n).await.ok())
    }
}

/// Bytes held from a [`MessageMemory`] until dropped.
pub struct Held(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn big_messages_take_turns_small_ones_share() {
        let m = MessageMemory::new(10 << 20);
        let a = m.hold(3 << 20).await;
        let _b = m.hold(3 << 20).await;
        // A big message waits for all of the budget.
        let big = tokio::time::timeout(Duration::from_millis(50), m.hold(5 << 20)).await;
        assert!(big.is_err(), "held while others hold part of the budget");
        drop(a);
        let small = tokio::time::timeout(Duration::from_millis(50), m.hold(1 << 20)).await;
        assert!(small.is_ok(), "room left for a small one");
        drop(small);
        drop(_b);
        let big = m.hold(5 << 20).await;
        let small = tokio::time::timeout(Duration::from_millis(50), m.hold(1)).await;
        assert!(small.is_err(), "a big one holds everything");
        drop(big);
    }
}
