use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Upper bounds (seconds) of the accept-latency histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Process-wide counters, rendered in the Prometheus text format.
/// Plain atomics: cheaper than a metrics registry on the accept path.
#[derive(Default)]
pub struct Metrics {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub delivered: AtomicU64,
    pub deferred: AtomicU64,
    pub failed: AtomicU64,
    pub held: AtomicU64,
    pub cancelled: AtomicU64,
    pub dsn_sent: AtomicU64,
    pub inspected: AtomicU64,
    pub inspect_incomplete: AtomicU64,
    /// Archive records written (received and final copies).
    pub archived: AtomicU64,
    /// Messages the archiver read and inspected again (their review's
    /// hand-off was gone).
    pub archive_reinspected: AtomicU64,
    pub smtp_sessions: AtomicI64,
    /// Disk, archive and delivery health (gauges).
    pub health: crate::Health,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// Records the time from end of DATA to the 250 reply.
    pub fn observe_accept(&self, seconds: f64) {
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    /// `depth` is the number of messages per non-final state.
    pub fn render(&self, depth: &[(&str, i64)]) -> String {
        let mut out = String::new();
        let counters = [
            ("tomare_messages_accepted_total", "Messages accepted with 250.", &self.accepted),
            ("tomare_messages_rejected_total", "Transactions refused with 4xx/5xx.", &self.rejected),
            ("tomare_messages_delivered_total", "Messages delivered to every recipient.", &self.delivered),
            ("tomare_messages_deferred_total", "Delivery attempts that will be retried.", &self.deferred),
            ("tomare_messages_failed_total", "Messages that failed permanently or expired.", &self.failed),
            ("tomare_messages_held_total", "Messages put on hold at accept.", &self.held),
            ("tomare_messages_cancelled_total", "Messages cancelled during hold.", &self.cancelled),
            ("tomare_dsn_sent_total", "Delivery status notifications generated.", &self.dsn_sent),
            ("tomare_messages_inspected_total", "Messages inspected.", &self.inspected),
            (
                "tomare_inspections_incomplete_total",
                "Inspections that could not read everything.",
                &self.inspect_incomplete,
            ),
            ("tomare_archive_records_total", "Archive records written (received and final).", &self.archived),
            (
                "tomare_archive_reinspected_total",
                "Messages the archiver read and inspected again, their review's hand-off gone.",
                &self.archive_reinspected,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP tomare_smtp_sessions Open inbound SMTP sessions.\n# TYPE tomare_smtp_sessions gauge\ntomare_smtp_sessions {}",
            self.smtp_sessions.load(Relaxed)
        );
        let h = &self.health;
        let gauges = [
            ("tomare_disk_free_bytes", "Free space on the data disk.", h.disk_free.load(Relaxed) as i64),
            (
                "tomare_disk_reserve_bytes",
                "Free space kept back ([storage] min_free).",
                h.disk_reserve.load(Relaxed) as i64,
            ),
            (
                "tomare_archive_lag_seconds",
                "Seconds the archiver has been behind (0: caught up, -1: off).",
                h.archive_lag.load(Relaxed),
            ),
            (
                "tomare_delivery_failures_in_row",
                "Delivery attempts in a row that failed for every recipient.",
                h.delivery_failures_in_row.load(Relaxed) as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let _ = writeln!(out, "# HELP tomare_queue_depth Messages per queue state.\n# TYPE tomare_queue_depth gauge");
        for (state, n) in depth {
            let _ = writeln!(out, "tomare_queue_depth{{state=\"{state}\"}} {n}");
        }
        let name = "tomare_accept_latency_seconds";
        let _ = writeln!(out, "# HELP {name} End of DATA to 250, including fsync and commit.\n# TYPE {name} histogram");
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", self.latency_buckets[i].load(Relaxed));
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.latency_sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}
