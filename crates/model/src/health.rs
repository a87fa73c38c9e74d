//! What `/healthz` reports and what the SMTP listener checks before it
//! takes more mail: free space on the data disk against its reserve, how
//! far the archive is behind, and whether delivery keeps failing. Stages
//! set these gauges; nobody reads them back by name.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

#[derive(Debug)]
pub struct Health {
    /// Free bytes on the data disk (for unprivileged users), last measured.
    pub disk_free: AtomicU64,
    /// `[storage] min_free`, in bytes.
    pub disk_reserve: AtomicU64,
    /// False until the first measurement (and when statvfs fails).
    pub disk_known: AtomicBool,
    /// Seconds the archiver has been behind: since its last pass that left
    /// nothing waiting (0 when caught up, -1 when the archive is off). A
    /// pass that fails counts as behind.
    pub archive_lag: AtomicI64,
    /// Delivery attempts in a row that ended in a temporary or connection
    /// failure for every recipient (0 after any success).
    pub delivery_failures_in_row: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            disk_free: AtomicU64::new(u64::MAX),
            disk_reserve: AtomicU64::new(0),
            disk_known: AtomicBool::new(false),
            archive_lag: AtomicI64::new(-1),
            delivery_failures_in_row: AtomicU64::new(0),
        }
    }
}

/// The archive is "behind" once it has not caught up for this long.
pub const ARCHIVE_LAG_LIMIT: i64 = 600;
/// Delivery is "failing" after this many whole attempts failed in a row.
pub const DELIVERY_FAILURE_LIMIT: u64 = 20;

impl Health {
    /// Whether a message of `size` bytes fits above the reserve.
    pub fn room_for(&self, size: u64) -> bool {
        let free = self.disk_free.load(Relaxed);
        let reserve = self.disk_reserve.load(Relaxed);
        free >= reserve.saturating_add(size)
    }

    /// What is wrong, in a word each: `disk`, `archive`, `delivery`.
    pub fn problems(&self) -> Vec<&'static str> {
        let mut p = Vec::new();
        if !self.room_for(0) {
            p.push("disk");
        }
        if self.archive_lag.load(Relaxed) >= ARCHIVE_LAG_LIMIT {
            p.push("archive");
        }
        if self.delivery_failures_in_row.load(Relaxed) >= DELIVERY_FAILURE_LIMIT {
            p.push("delivery");
        }
        p
    }

    pub fn delivery_result(&self, any_delivered: bool, all_temporary: bool) {
        if any_delivered {
            self.delivery_failures_in_row.store(0, Relaxed);
        } else if all_temporary {
            self.delivery_failures_in_row.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_problems() {
        let h = Health::default();
        assert!(h.room_for(1 << 40) && h.problems().is_empty());
        h.disk_free.store(1_500, Relaxed);
        h.disk_reserve.store(1_000, Relaxed);
        assert!(h.room_for(500) && !h.room_for(501));
        assert!(h.problems().is_empty());
        h.disk_free.store(999, Relaxed);
        assert_eq!(h.problems(), ["disk"]);
        h.archive_lag.store(ARCHIVE_LAG_LIMIT, Relaxed);
        for _ in 0..DELIVERY_FAILURE_LIMIT {
            h.delivery_result(false, true);
        }
        assert_eq!(h.problems(), ["disk", "archive", "delivery"]);
        h.delivery_result(true, false);
        assert_eq!(h.problems(), ["disk", "archive"]);
    }
}
