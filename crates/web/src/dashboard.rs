//! The admin's dashboard: messages by state and by rule, per day received
//! (UTC), and whether holding works — how many held mails their senders
//! cancelled, and how long after sending they did (the median). The same
//! numbers as CSV.

use std::collections::{BTreeMap, BTreeSet};
use tomare_model::State;
use tomare_store::Stats;

#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// Days with any mail, oldest first.
    pub days: Vec<String>,
    /// States that occur, in the queue's order.
    pub states: Vec<State>,
    /// By (day, state's code).
    pub by_state: BTreeMap<(String, &'static str), i64>,
    pub rules: Vec<String>,
    pub by_rule: BTreeMap<(String, String), i64>,
    pub held: i64,
    /// Held mails their own sender cancelled (by link, web or API).
    pub cancelled_by_sender: usize,
    /// Held mails someone else cancelled (an admin, the CLI).
    pub cancelled_by_others: usize,
    /// The median time from sending to the sender's cancel.
    pub median_cancel_ms: Option<i64>,
}

pub fn summarize(stats: &Stats) -> Dashboard {
    let mut days = BTreeSet::new();
    let mut by_state = BTreeMap::new();
    for (day, state, n) in &stats.by_state {
        days.insert(day.clone());
        by_state.insert((day.clone(), state.as_str()), *n);
    }
    let states = State::ALL.into_iter().filter(|s| by_state.keys().any(|(_, k)| *k == s.as_str())).collect();
    let mut rules = BTreeSet::new();
    let mut by_rule = BTreeMap::new();
    for (day, rule, n) in &stats.by_rule {
        days.insert(day.clone());
        rules.insert(rule.clone());
        by_rule.insert((day.clone(), rule.clone()), *n);
    }
    let mut by_sender: Vec<i64> = Vec::new();
    let mut others = 0;
    for (from, actor, ms) in &stats.cancels {
        if tomare_model::actor_account(actor).is_some_and(|(a, _)| a.eq_ignore_ascii_case(from)) {
            by_sender.push(*ms);
        } else {
            others += 1;
        }
    }
    by_sender.sort_unstable();
    let median_cancel_ms = match by_sender.len() {
        0 => None,
        n if n % 2 == 1 => Some(by_sender[n / 2]),
        n => Some((by_sender[n / 2 - 1] + by_sender[n / 2]) / 2),
    };
    Dashboard {
        days: days.into_iter().collect(),
        states,
        by_state,
        rules: rules.into_iter().collect(),
        by_rule,
        held: stats.held,
        cancelled_by_sender: by_sender.len(),
        cancelled_by_others: others,
        median_cancel_ms,
    }
}

impl Dashboard {
    pub fn state_count(&self, day: &str, state: &State) -> i64 {
        self.by_state.get(&(day.to_string(), state.as_str())).copied().unwrap_or(0)
    }

    pub fn rule_count(&self, day: &str, rule: &str) -> i64 {
        self.by_rule.get(&(day.to_string(), rule.to_string())).copied().unwrap_or(0)
    }

    pub fn state_total(&self, state: &State) -> i64 {
        self.by_state.iter().filter(|((_, s), _)| *s == state.as_str()).map(|(_, n)| n).sum()
    }

    pub fn rule_total(&self, rule: &str) -> i64 {
        self.by_rule.iter().filter(|((_, r), _)| r == rule).map(|(_, n)| n).sum()
    }

    /// Share of held mails their senders cancelled, in percent.
    pub fn cancel_share(&self) -> String {
        if self.held == 0 {
            return "-".into();
        }
        format!("{:.1}%", self.cancelled_by_sender as f64 * 100.0 / self.held as f64)
    }

    pub fn median_text(&self) -> String {
        match self.median_cancel_ms {
            None => "-".into(),
            Some(ms) if ms < 60_000 => format!("{:.0} s", ms as f64 / 1000.0),
            Some(ms) => format!("{:.1} min", ms as f64 / 60_000.0),
        }
    }

    /// `kind,day,key,count` lines: `state` and `rule` per day, then the
    /// period's `held`, `cancelled_by_sender`, `cancelled_by_others` and
    /// `median_cancel_seconds` (day and key empty).
    pub fn csv(&self) -> String {
        let field = csv_cell;
        let mut out = String::from("kind,day,key,count\n");
        for ((day, state), n) in &self.by_state {
            out.push_str(&format!("state,{day},{state},{n}\n"));
        }
        for ((day, rule), n) in &self.by_rule {
            out.push_str(&format!("rule,{day},{},{n}\n", field(rule)));
        }
        out.push_str(&format!("held,,,{}\n", self.held));
        out.push_str(&format!("cancelled_by_sender,,,{}\n", self.cancelled_by_sender));
        out.push_str(&format!("cancelled_by_others,,,{}\n", self.cancelled_by_others));
        let median = self.median_cancel_ms.map(|ms| format!("{:.1}", ms as f64 / 1000.0)).unwrap_or_default();
        out.push_str(&format!("median_cancel_seconds,,,{median}\n"));
        out
    }
}

/// One CSV cell: quoted when it must be, and a value a spreadsheet would
/// run as a formula (`=`, `+`, `-`, `@`) kept as text.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_senders_own_cancels_count_and_the_median_is_theirs() {
        let stats = Stats {
            by_state: vec![("2026-12-01".into(), State::Cancelled, 3), ("2026-12-02".into(), State::Delivered, 5)],
            by_rule: vec![("2026-12-01".into(), "a,\"b\"".into(), 2)],
            held: 8,
            cancels: vec![
                ("Taro@example.com".into(), "web:taro@example.com".into(), 30_000),
                ("taro@example.com".into(), "link:taro@example.com".into(), 90_000),
                ("taro@example.com".into(), "api:taro@example.com".into(), 10_000),
                ("taro@example.com".into(), "web:root@example.com (admin, for -)".into(), 1_000),
                ("taro@example.com".into(), "cli".into(), 5_000),
            ],
        };
        let d = summarize(&stats);
        assert_eq!((d.cancelled_by_sender, d.cancelled_by_others), (3, 2));
        assert_eq!(d.median_cancel_ms, Some(30_000));
        assert_eq!(d.cancel_share(), "37.5%");
        assert_eq!(d.days, ["2026-12-01", "2026-12-02"]);
        assert_eq!(d.states, [State::Delivered, State::Cancelled]);
        assert_eq!(d.state_count("2026-12-02", &State::Delivered), 5);
        let csv = d.csv();
        assert!(csv.contains("rule,2026-12-01,\"a,\"\"b\"\"\",2\n"), "{csv}");
        assert!(csv.contains("cancelled_by_sender,,,3\nc"), "{csv}");
        assert!(csv.ends_with("median_cancel_seconds,,,30.0\n"), "{csv}");
        let even = Stats { cancels: stats.cancels[..2].to_vec(), ..Stats::default() };
        assert_eq!(summarize(&even).median_cancel_ms, Some(60_000));
        assert_eq!(summarize(&Stats::default()).median_text(), "-");
    }
}
