//! How the process runs (issue 10's relay target): the allocator's options
//! are in effect before anything allocates, and the archiver yields the CPU
//! to accept, review and delivery.

mod common;

use common::*;
use std::time::Duration;

/// mimalloc prints its options at start with MIMALLOC_VERBOSE=1.
fn allocator_options(envs: &[(&str, &str)]) -> String {
    let mut c = tomare();
    c.arg("--version").env("MIMALLOC_VERBOSE", "1");
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_allocator_is_tuned_before_it_starts_and_the_environment_still_wins() {
    let options = allocator_options(&[]);
    assert!(options.contains("option 'arena_eager_commit': 0"), "{options}");
    assert!(options.contains("option 'purge_delay': 100"), "{options}");
    assert!(options.contains("option 'arena_max_object_size': 4096 KiB"), "{options}");
    let options = allocator_options(&[("MIMALLOC_PURGE_DELAY", "7")]);
    assert!(options.contains("option 'purge_delay': 7"), "{options}");
    assert!(options.contains("option 'arena_eager_commit': 0"), "{options}");
}

/// (thread name, nice) of every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // pid (comm) state ppid …: the fields after the comm, nice is the 19th.
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let name = head.split_once(" (").map_or("", |(_, n)| n).to_string();
        let nice = rest.split(' ').nth(16).and_then(|n| n.parse().ok()).unwrap_or(i64::MIN);
        out.push((name, nice));
    }
    out
}

/// Threads that run the archive's CPU work: the archiver's blocking
/// threads and those tantivy's index writer starts from them (names as the
/// kernel keeps them, 15 bytes).
const ARCHIVE_THREADS: [&str; 5] =
    ["archiver-work", "thrd-tantivy-in", "segment_updater", "merge_thread_", "docstore-compre"];

#[test]
fn the_archiver_runs_below_the_relay() {
    let sink = Sink::start();
    let gw = Gateway::start(&format!(
        "[hold]\nexternal = \"0s\"\ninternal = \"0s\"\n[delivery]\nmode = \"relay\"\n[delivery.relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        sink.port
    ));
    // A message through the whole path starts the archiver's worker
    // threads (they linger idle for a while after its pass).
    smtp_send(&gw.smtp, "taro@example.com", &["partner@customer.test"], &message("nice", "<nice@example.com>"))
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || sink.count() == 1));
    let mut seen = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            seen = threads(gw.pid());
            ["archiver", "archiver-work", "tokio-rt-worker", "sqlx-sqlite-wor"]
                .iter()
                .all(|want| seen.iter().any(|(n, _)| n == want))
        }),
        "{seen:?}"
    );
    // Relative to the server's own priority, whatever the test runs at.
    let base = seen.iter().find(|(n, _)| n == "tomare").map(|(_, nice)| *nice).expect("the main thread");
    for (name, nice) in &seen {
        let archive_work = ARCHIVE_THREADS.iter().any(|a| name.starts_with(a));
        let want = if archive_work { (base + 10).min(19) } else { base };
        assert_eq!(*nice, want, "{name}: {seen:?}");
    }
}
