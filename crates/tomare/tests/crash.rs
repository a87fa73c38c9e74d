//! Crash safety: under concurrent load, `kill -9` the server, restart it,
//! and check that every message acknowledged with 250 was delivered.

mod common;

use common::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn every_acknowledged_message_survives_kill_9() {
    let sink = Sink::start();
    sink.plan.lock().unwrap().data_delay = Duration::from_millis(2);
    let mut g = Gateway::start(&format!("{}[hold]\nexternal = \"0s\"\n", relay_to(sink.port, "concurrency = 4")));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let seq = Arc::new(AtomicUsize::new(0));

    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let before = acked.lock().unwrap().len();
        let senders: Vec<_> = (0..8)
            .map(|_| {
                let (smtp, acked, seq, stop) = (g.smtp.clone(), acked.clone(), seq.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mid = format!("crash-{}@example.com", seq.fetch_add(1, Ordering::Relaxed));
                        let body = message("crash test", &mid);
                        match smtp_send(&smtp, "taro@example.com", &["a@customer.test", "b@partner.test"], &body) {
                            Ok(_) => acked.lock().unwrap().push(mid),
                            // The server is gone: this message got no 250,
                            // so no promise was made about it.
                            Err(_) => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                })
            })
            .collect();
        let start = Instant::now();
        // Kill at a moment that differs per round, under load.
        let target = before + 150 + round * 97;
        while acked.lock().unwrap().len() < target && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        g.kill();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.join().unwrap();
        }
        g.spawn();
    }

    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.len() >= 450, "load too small to mean anything: {}", acked.len());
    let delivered = || -> HashSet<String> {
        sink.messages()
            .iter()
            .filter_map(|m| m.header("Message-ID"))
            .map(|s| s.trim_matches(['<', '>']).to_string())
            .collect()
    };
    let all_there = wait_until(Duration::from_secs(60), || acked.is_subset(&delivered()));
    let missing: Vec<_> = acked.difference(&delivered()).cloned().collect();
    assert!(
        all_there,
        "{} acknowledged messages lost, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        g.log()
    );
    let ids: Vec<String> = sink.messages().iter().filter_map(|m| m.header("Message-ID")).collect();
    let dups = count_by(&ids).values().filter(|n| **n > 1).count();
    eprintln!(
        "acknowledged {}, delivered {} distinct, {} delivered twice (at-least-once after a crash)",
        acked.len(),
        delivered().len(),
        dups
    );
    // Every delivered copy carried both recipients in one transaction.
    assert!(sink.messages().iter().all(|m| m.rcpts == ["a@customer.test", "b@partner.test"]));
}
