//! Rules evaluated per second with the built-in pack, over every mail file
//! under the given folders (inspected once, beforehand). Used by
//! bench/policy.sh. Usage: rules_rate DIR...

use std::collections::HashSet;
use std::time::{Duration, Instant};
use tomare_config::Config;
use tomare_model::Envelope;
use tomare_model::i18n::Lang;
use tomare_policy::{Context, Directory, Engine};

fn files(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.len() < 10_000_000
        {
            out.push(bytes);
        }
    }
}

fn main() {
    let mut raw = Vec::new();
    for dir in std::env::args().skip(1) {
        files(std::path::Path::new(&dir), &mut raw);
    }
    let config = Config::default();
    let inspector = tomare_inspect::Inspector::new(&config).expect("default config");
    let engine = Engine::new(&config, Vec::new()).expect("built-in pack");
    let messages: Vec<(Envelope, tomare_model::Facts)> = raw
        .iter()
        .map(|r| {
            let facts = inspector.message(r);
            let mut rcpt_to: Vec<tomare_model::Address> =
                facts.to.iter().chain(&facts.cc).chain(&facts.bcc).filter_map(|a| a.parse().ok()).collect();
            if rcpt_to.is_empty() {
                rcpt_to.push("someone@customer.test".parse().expect("an address"));
            }
            let envelope = Envelope {
                mail_from: "taro@example.com".parse().expect("an address"),
                rcpt_to,
                helo: String::new(),
                client_ip: String::new(),
                auth_user: None,
            };
            (envelope, facts)
        })
        .collect();
    let directory = Directory::default();
    let contacted: HashSet<String> = ["customer.test".to_string(), "example.org".to_string()].into_iter().collect();
    let history = tomare_policy::History { contacted, waiting: HashSet::new() };
    let ctx = Context {
        internal_domains: &config.org.internal_domains,
        directory: &directory,
        history: &history,
        now_ms: 1_700_000_000_000,
        lang: Lang::En,
    };
    let (mut evaluations, mut fired) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        for (envelope, facts) in &messages {
            fired += engine.evaluate(envelope, facts, &ctx).rules.len() as u64;
            evaluations += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} messages, built-in pack of {} rules: {:.0} messages/s ({:.0} rule evaluations/s), {:.1} rules fired per message",
        messages.len(),
        engine.rules().len(),
        evaluations as f64 / secs,
        evaluations as f64 * engine.rules().len() as f64 / secs,
        fired as f64 / evaluations as f64
    );
}
