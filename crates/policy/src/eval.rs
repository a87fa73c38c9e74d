use crate::lookalike;
use regex::{Regex, RegexBuilder};
use std::collections::{BTreeSet, HashMap, HashSet};
use tomare_config::rules::{Approval, AttachmentCond, DetectionCond, OnTimeout, TextCond, TimeCond};
use tomare_config::{Action, Cond, Config, DirectoryUser, Rule};
use tomare_model::i18n::{Lang, t};
use tomare_model::{
    Address, ApprovalPlan, Envelope, Facts, Fired, Outcome, Verdict, domain_of, is_internal_domain, normalize,
};

/// Who works for whom, and who is in which group.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: HashMap<String, DirectoryUser>,
}

impl Directory {
    pub fn new(users: impl IntoIterator<Item = DirectoryUser>) -> Directory {
        Directory { users: users.into_iter().map(|u| (u.email.to_lowercase(), u)).collect() }
    }

    pub fn get(&self, email: &str) -> Option<&DirectoryUser> {
        self.users.get(&email.to_lowercase())
    }

    pub fn supervisor_of(&self, email: &str) -> Option<&str> {
        self.get(email).and_then(|u| u.supervisor.as_deref())
    }

    /// Everyone in `group`.
    pub fn members(&self, group: &str) -> Vec<&str> {
        let mut m: Vec<&str> =
            self.users.values().filter(|u| u.groups.iter().any(|g| g == group)).map(|u| u.email.as_str()).collect();
        m.sort();
        m
    }

    /// The people whose supervisor is `email` (lower case, sorted).
    pub fn reports(&self, email: &str) -> Vec<&str> {
        let mut r: Vec<&str> = self
            .users
            .iter()
            .filter(|(_, u)| u.supervisor.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(email)))
            .map(|(k, _)| k.as_str())
            .collect();
        r.sort();
        r
    }

    /// Everyone in the directory (lower-case address → entry).
    pub fn people(&self) -> impl Iterator<Item = (&str, &DirectoryUser)> {
        self.users.iter().map(|(k, u)| (k.as_str(), u))
    }

    pub fn groups_of(&self, email: &str) -> &[String] {
        self.get(email).map(|u| u.groups.as_slice()).unwrap_or(&[])
    }
}

/// What evaluation needs besides the message.
pub struct Context<'a> {
    pub internal_domains: &'a [String],
    pub directory: &'a Directory,
    pub history: &'a History,
    pub now_ms: i64,
    pub lang: Lang,
}

/// Whom the org writes to: what `first_contact` and `lookalike_domain`
/// compare a message's external domains with (all lower case).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Domains mail was delivered to. Mail cancelled, denied or rejected
    /// never reaches it: only a delivery makes a domain known.
    pub contacted: HashSet<String>,
    /// Domains of mail waiting now (held, awaiting approval): not yet
    /// contacted, but a look-alike of one is as likely a slip as a
    /// look-alike of an old customer.
    pub waiting: HashSet<String>,
}

/// How long an approval forced by an incomplete inspection waits before it
/// is rejected (as the built-in pack's approvals).
const INCOMPLETE_APPROVAL_TIMEOUT: u64 = 4 * 3600;

/// A rule the engine refuses, and why (the rule's name lets the caller
/// point at its line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub rule: String,
    pub message: String,
}

impl RuleError {
    fn new(rule: &Rule, message: impl Into<String>) -> RuleError {
        RuleError { rule: rule.name.clone(), message: message.into() }
    }
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule {:?}: {}", self.rule, self.message)
    }
}

impl std::error::Error for RuleError {}

pub struct Engine {
    rules: Vec<Rule>,
    regexes: HashMap<String, Regex>,
}

impl Engine {
    /// The built-in pack (unless `[policy] builtin = false`), then the
    /// config's `[[rule]]`s, then `extra` (a rules file). Refuses duplicate
    /// names, bad patterns and actions that cannot work.
    pub fn new(config: &Config, extra: Vec<Rule>) -> Result<Engine, RuleError> {
        let mut rules = if config.policy.builtin { crate::builtin_rules(config) } else { Vec::new() };
        rules.extend(config.rule.iter().cloned());
        rules.extend(extra);
        let mut names = HashSet::new();
        let mut regexes = HashMap::new();
        for rule in &rules {
            if !names.insert(rule.name.clone()) {
                return Err(RuleError::new(rule, "is defined twice"));
            }
            if rule.then.is_empty() {
                return Err(RuleError::new(rule, "has no actions"));
            }
            let mut patterns = Vec::new();
            collect_patterns(&rule.when, &mut patterns);
            for p in patterns {
                let re = RegexBuilder::new(&p)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| RuleError::new(rule, format!("pattern {p:?}: {e}")))?;
                regexes.insert(p, re);
            }
            for a in &rule.then {
                match a {
                    Action::ConvertToBcc(mode) if mode != "undisclosed" && mode != "sender" => {
                        return Err(RuleError::new(rule, "convert_to_bcc is \"undisclosed\" or \"sender\""));
                    }
                    Action::ProtectAttachments(mode) if tomare_model::ProtectMode::parse(mode).is_none() => {
                        return Err(RuleError::new(rule, "protect_attachments is \"link\" or \"zip\""));
                    }
                    Action::Notify(who) if who != "sender" && who != "admin" => {
                        return Err(RuleError::new(rule, "notify is \"sender\" or \"admin\""));
                    }
                    Action::RequireApproval(Approval { on_timeout: OnTimeout::Escalate, deputy: None, .. }) => {
                        return Err(RuleError::new(rule, "on_timeout = \"escalate\" needs a deputy"));
                    }
                    Action::AddRecipient(who) if who != "supervisor" && who.parse::<Address>().is_err() => {
                        return Err(RuleError::new(rule, format!("add_recipient {who:?} is not an address")));
                    }
                    Action::RequireApproval(a)
                        if a.approver != "supervisor"
                            && !a.approver.starts_with("group:")
                            && !a.approver.contains('@') =>
                    {
                        return Err(RuleError::new(
                            rule,
                            format!("approver {:?} is not an address, group:NAME or \"supervisor\"", a.approver),
                        ));
                    }
                    Action::RequireApproval(a)
                        if (a.approver.contains('@') && a.approver.parse::<Address>().is_err())
                            || a.deputy
                                .as_deref()
                                .is_some_and(|d| d.contains('@') && d.parse::<Address>().is_err()) =>
                    {
                        return Err(RuleError::new(rule, "the approver or deputy is not an address"));
                    }
                    Action::AddHeader(h) if h.name.is_empty() || h.name.contains([':', ' ', '\r', '\n']) => {
                        return Err(RuleError::new(rule, format!("bad header name {:?}", h.name)));
                    }
                    Action::AddHeader(h) if h.value.contains(['\r', '\n']) => {
                        return Err(RuleError::new(rule, "header value must be one line"));
                    }
                    _ => {}
                }
            }
        }
        Ok(Engine { rules, regexes })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn evaluate(&self, envelope: &Envelope, facts: &Facts, ctx: &Context) -> Verdict {
        let msg = Msg::new(envelope, facts, ctx);
        let mut verdict = Verdict {
            outcome: Outcome::Deliver,
            hold_seconds: 0,
            rules: Vec::new(),
            transforms: Vec::new(),
            approval: None,
            reject_reason: None,
            convert_to_bcc: None,
            add_recipients: Vec::new(),
            add_headers: Vec::new(),
            notify: Vec::new(),
            protect: None,
        };
        for rule in &self.rules {
            let Some(evidence) = self.eval(&rule.when, &msg, ctx) else { continue };
            let description = match t(ctx.lang, &format!("rule.{}", rule.name), &[]) {
                key if key.starts_with("rule.") => rule.description.clone(),
                text => text,
            };
            let reason = match (description.is_empty(), evidence.is_empty()) {
                (true, _) => evidence,
                (false, true) => description,
                (false, false) => format!("{description} ({evidence})"),
            };
            verdict.rules.push(Fired { name: rule.name.clone(), reason });
            for action in &rule.then {
                self.apply(action, envelope, ctx, &mut verdict);
            }
            if rule.stop {
                break;
            }
        }
        self.fail_closed(&msg, ctx, &mut verdict);
        verdict.outcome = if verdict.reject_reason.is_some() {
            Outcome::Reject
        } else if verdict.approval.is_some() {
            Outcome::Approval
        } else if verdict.hold_seconds > 0 {
            Outcome::Hold
        } else {
            Outcome::Deliver
        };
        if verdict.convert_to_bcc.is_some() {
            verdict.transforms.push("convert_to_bcc".into());
        }
        if !verdict.add_recipients.is_empty() {
            verdict.transforms.push("add_recipient".into());
        }
        if !verdict.add_headers.is_empty() {
            verdict.transforms.push("add_header".into());
        }
        // Only attachments sent outside are protected.
        if msg.external.is_empty() || !facts.attachments.iter().any(|a| !a.path.contains('/')) {
            verdict.protect = None;
        }
        if let Some(mode) = verdict.protect {
            verdict.transforms.push(format!("protect_attachments:{}", mode.as_str()));
        }
        verdict
    }

    /// Mail to outside whose inspection did not finish leaves only when a
    /// person says so: whatever the rules decided short of a rejection
    /// becomes an approval (the sender's supervisor, else the org's admins)
    /// that a deadline can only reject, never release. A hold that ends by
    /// itself is only for mail whose content was read. Not a rule: turning
    /// the built-in pack off does not turn this off.
    fn fail_closed(&self, m: &Msg, ctx: &Context, v: &mut Verdict) {
        // Outside: an envelope recipient, or one a rule adds.
        let outside = !m.external.is_empty() || v.add_recipients.iter().any(|a| !a.is_internal(ctx.internal_domains));
        if m.facts.complete || !outside || v.reject_reason.is_some() {
            return;
        }
        let sender = m.envelope.mail_from.to_string();
        let plan = v.approval.get_or_insert_with(|| ApprovalPlan {
            approver: ctx.directory.supervisor_of(&sender).unwrap_or_default().to_string(),
            timeout_seconds: INCOMPLETE_APPROVAL_TIMEOUT,
            on_timeout: OnTimeout::Reject,
            deputy: None,
        });
        if plan.on_timeout == OnTimeout::Release {
            plan.on_timeout = OnTimeout::Reject;
        }
        if !v.rules.iter().any(|r| r.name == "inspection-incomplete") {
            let reasons = m.facts.incomplete_reasons.join("; ");
            let description = t(ctx.lang, "rule.inspection-incomplete", &[]);
            v.rules.push(Fired { name: "inspection-incomplete".into(), reason: format!("{description} ({reasons})") });
        }
    }

    fn apply(&self, action: &Action, envelope: &Envelope, ctx: &Context, v: &mut Verdict) {
        let sender = envelope.mail_from.to_string();
        let sender = sender.as_str();
        match action {
            Action::Hold(d) => v.hold_seconds = v.hold_seconds.max(d.0.as_secs()),
            Action::RequireApproval(a) => {
                if v.approval.is_none() {
                    let approver = if a.approver == "supervisor" {
                        ctx.directory.supervisor_of(sender).unwrap_or_default().to_string()
                    } else {
                        a.approver.clone()
                    };
                    v.approval = Some(ApprovalPlan {
                        approver,
                        timeout_seconds: a.timeout.0.as_secs(),
                        on_timeout: a.on_timeout,
                        deputy: a.deputy.clone(),
                    });
                }
            }
            Action::Reject(reason) => {
                if v.reject_reason.is_none() {
                    v.reject_reason = Some(reason.clone());
                }
            }
            Action::ConvertToBcc(mode) => {
                if v.convert_to_bcc.is_none() {
                    v.convert_to_bcc = Some(mode.clone());
                }
            }
            Action::AddRecipient(who) => {
                let address =
                    if who == "supervisor" { ctx.directory.supervisor_of(sender) } else { Some(who.as_str()) };
                // Addresses in rules are checked when the engine is built;
                // a supervisor from an imported directory might not parse.
                if let Some(a) = address.and_then(|a| a.parse::<Address>().ok())
                    && !envelope.rcpt_to.iter().any(|r| r.eq_ignore_case(&a))
                    && !v.add_recipients.iter().any(|r| r.eq_ignore_case(&a))
                {
                    v.add_recipients.push(a);
                }
            }
            Action::AddHeader(h) => v.add_headers.push((h.name.clone(), h.value.clone())),
            Action::Notify(who) => {
                if !v.notify.contains(who) {
                    v.notify.push(who.clone());
                }
            }
            Action::ProtectAttachments(mode) => {
                v.protect = v.protect.max(tomare_model::ProtectMode::parse(mode));
            }
        }
    }

    /// `Some(evidence)` when `cond` holds.
    fn eval(&self, cond: &Cond, m: &Msg, ctx: &Context) -> Option<String> {
        let lang = ctx.lang;
        let yes = |b: bool, text: String| b.then_some(text);
        match cond {
            Cond::All(children) => {
                let mut parts = Vec::new();
                for c in children {
                    let e = self.eval(c, m, ctx)?;
                    if !e.is_empty() {
                        parts.push(e);
                    }
                }
                Some(parts.join("; "))
            }
            Cond::Any(children) => children.iter().find_map(|c| self.eval(c, m, ctx)),
            Cond::Not(c) => yes(self.eval(c, m, ctx).is_none(), String::new()),
            Cond::ExternalRecipients(n) => {
                yes(n.contains(m.external.len()), t(lang, "ev.external_recipients", &[&m.external.len()]))
            }
            Cond::VisibleExternalRecipients(n) => {
                yes(n.contains(m.visible_external.len()), t(lang, "ev.visible_external", &[&m.visible_external.len()]))
            }
            Cond::ExternalDomains(n) => {
                let list = m.external_domains.iter().cloned().collect::<Vec<_>>().join(", ");
                yes(
                    n.contains(m.external_domains.len()),
                    t(lang, "ev.external_domains", &[&m.external_domains.len(), &list]),
                )
            }
            Cond::RecipientDomain(domains) => {
                let hit = m.envelope.rcpt_to.iter().map(|r| r.domain()).find(|d| is_internal_domain(d, domains))?;
                Some(t(lang, "ev.recipient_domain", &[&hit]))
            }
            Cond::AllInternal(want) => yes(m.external.is_empty() == *want, String::new()),
            Cond::Sender(list) => {
                let from = &m.envelope.mail_from;
                let s = from.to_string().to_lowercase();
                let hit = list.iter().any(|x| {
                    let x = x.to_lowercase();
                    if let Some(domain) = x.strip_prefix('@') { from.domain() == domain } else { x == s }
                });
                yes(hit, t(lang, "ev.sender", &[from]))
            }
            Cond::SenderGroup(groups) => {
                let sender = m.envelope.mail_from.to_string();
                let hit = ctx.directory.groups_of(&sender).iter().find(|g| groups.contains(g))?;
                Some(t(lang, "ev.sender_group", &[hit]))
            }
            Cond::Text(tc) => self.text(tc, m, lang),
            Cond::Detection(dc) => detection(dc, m.facts, lang),
            Cond::Attachment(ac) => self.attachment(ac, m.facts, lang),
            Cond::AttachmentCount(n) => {
                let count = m.facts.attachments.iter().filter(|a| !a.path.contains('/')).count();
                yes(n.contains(count), t(lang, "ev.attachment_count", &[&count]))
            }
            Cond::InspectionIncomplete(want) => {
                let reasons = m.facts.incomplete_reasons.join("; ");
                yes(
                    m.facts.complete != *want,
                    if *want { t(lang, "ev.incomplete", &[&reasons]) } else { String::new() },
                )
            }
            Cond::MalformedHeaders(want) => {
                let first = m.facts.malformed_headers.first().cloned().unwrap_or_default();
                yes(
                    m.facts.malformed_headers.is_empty() != *want,
                    if *want { t(lang, "ev.malformed", &[&first]) } else { String::new() },
                )
            }
            Cond::BodyAddresses(n) => {
                let count = m
                    .facts
                    .detections
                    .iter()
                    .find(|d| d.detector == "email_list" && d.location == "body")
                    .map(|d| d.count)
                    .unwrap_or(0);
                yes(n.contains(count), t(lang, "ev.body_addresses", &[&count]))
            }
            Cond::FirstContact(want) => {
                let new: Vec<&String> =
                    m.external_domains.iter().filter(|d| !ctx.history.contacted.contains(*d)).collect();
                let list = new.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
                yes(new.is_empty() != *want, if *want { t(lang, "ev.first_contact", &[&list]) } else { String::new() })
            }
            Cond::LookalikeDomain(want) => {
                let settled = lookalike::settled(ctx.internal_domains, &ctx.history.contacted);
                // Against the org's own domains and those delivered to, as
                // ever; then against the domains of mail waiting now.
                let hit = m.external_domains.iter().find_map(|d| {
                    let of = lookalike::imitates(d, &settled)
                        .or_else(|| lookalike::imitates_waiting(d, &ctx.history.waiting, &settled));
                    of.map(|k| (d.clone(), k.clone()))
                });
                match (hit, *want) {
                    (Some((d, k)), true) => Some(t(lang, "ev.lookalike", &[&d, &k])),
                    (None, false) => Some(String::new()),
                    _ => None,
                }
            }
            Cond::Size(sc) => {
                let size = m.facts.size;
                let ok = sc.min.is_none_or(|x| size >= x.0) && sc.max.is_none_or(|x| size <= x.0);
                yes(ok, t(lang, "ev.size", &[&size]))
            }
            Cond::TimeOfDay(tc) => time_of_day(tc, ctx.now_ms).map(|hm| t(lang, "ev.time", &[&hm])),
        }
    }

    fn text(&self, tc: &TextCond, m: &Msg, lang: Lang) -> Option<String> {
        let wanted = |loc: &str| tc.r#in.is_empty() || tc.r#in.iter().any(|w| w == loc);
        let mut places: Vec<(&str, String)> = Vec::new();
        if wanted("subject") {
            places.push(("subject", normalize(&m.facts.subject)));
        }
        if wanted("body") {
            places.push(("body", normalize(&m.facts.body_text)));
        }
        if wanted("attachments") {
            for a in &m.facts.attachments {
                places.push((a.path.as_str(), normalize(&format!("{}\n{}", a.name, a.text))));
            }
        }
        for (loc, text) in &places {
            for k in &tc.contains {
                if text.contains(&normalize(k)) {
                    return Some(t(lang, "ev.text", &[k, &place(lang, loc)]));
                }
            }
            if let Some(p) = &tc.matches
                && let Some(hit) = self.regexes.get(p).and_then(|re| re.find(text))
            {
                return Some(t(lang, "ev.text", &[&hit.as_str(), &place(lang, loc)]));
            }
        }
        None
    }

    fn attachment(&self, ac: &AttachmentCond, facts: &Facts, lang: Lang) -> Option<String> {
        let matching: Vec<&str> = facts
            .attachments
            .iter()
            .filter(|a| ac.r#type.is_empty() || ac.r#type.iter().any(|t| t.eq_ignore_ascii_case(&a.detected_type)))
            .filter(|a| ac.name.as_ref().is_none_or(|p| self.regexes.get(p).is_some_and(|re| re.is_match(&a.name))))
            .filter(|a| ac.encrypted.is_none_or(|e| a.encrypted == e))
            .filter(|a| ac.not_inspectable.is_none_or(|n| (a.encrypted || a.error.is_some()) == n))
            .filter(|a| {
                ac.detected.as_ref().is_none_or(|detectors| {
                    facts
                        .detections
                        .iter()
                        .any(|d| d.location == a.path && (detectors.is_empty() || detectors.contains(&d.detector)))
                })
            })
            .map(|a| a.path.as_str())
            .collect();
        (matching.len() >= ac.min).then(|| t(lang, "ev.attachment", &[&matching.len(), &matching.join(", ")]))
    }
}

fn detection(dc: &DetectionCond, facts: &Facts, lang: Lang) -> Option<String> {
    let in_scope = |loc: &str| {
        dc.r#in.is_empty()
            || dc.r#in.iter().any(|w| match w.as_str() {
                "attachments" => loc != "subject" && loc != "body",
                other => other == loc,
            })
    };
    let hits: Vec<_> = facts
        .detections
        .iter()
        .filter(|d| dc.detector.is_empty() || dc.detector.contains(&d.detector))
        .filter(|d| dc.name.is_empty() || dc.name.iter().any(|n| normalize(n) == normalize(&d.name)))
        .filter(|d| in_scope(&d.location))
        .collect();
    let total: usize = hits.iter().map(|d| d.count).sum();
    if total < dc.min.max(1) {
        return None;
    }
    let first = hits[0];
    let what =
        if first.name.is_empty() { first.detector.clone() } else { format!("{} {}", first.detector, first.name) };
    Some(t(lang, "ev.detection", &[&what, &place(lang, &first.location)]))
}

/// A location as the reader says it: the subject, the body, or the
/// attachment's path as it is.
fn place(lang: Lang, location: &str) -> String {
    match location {
        "subject" | "body" => t(lang, &format!("place.{location}"), &[]),
        path => path.to_string(),
    }
}

/// "HH:MM" when the time (in the rule's offset) is inside the range.
fn time_of_day(tc: &TimeCond, now_ms: i64) -> Option<String> {
    let minutes = |s: &str| -> Option<i64> {
        let (h, m) = s.trim().split_once(':')?;
        Some(h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?)
    };
    let offset = {
        let o = tc.utc_offset.trim();
        let sign = if o.starts_with('-') { -1 } else { 1 };
        minutes(o.trim_start_matches(['+', '-'])).map(|m| m * sign).unwrap_or(540)
    };
    let local_min = (now_ms / 60_000 + offset).rem_euclid(7 * 1440);
    // 1970-01-01 was a Thursday: day 0 → Thursday, 2 → Saturday, 3 → Sunday.
    let weekday = ((now_ms / 60_000 + offset).div_euclid(1440)).rem_euclid(7);
    let of_day = local_min % 1440;
    let hm = format!("{:02}:{:02}", of_day / 60, of_day % 60);
    if tc.weekends && (weekday == 2 || weekday == 3) {
        return Some(hm);
    }
    let (from, to) = (minutes(&tc.from)?, minutes(&tc.to)?);
    let inside = if from <= to { of_day >= from && of_day < to } else { of_day >= from || of_day < to };
    inside.then_some(hm)
}

fn collect_patterns(cond: &Cond, out: &mut Vec<String>) {
    match cond {
        Cond::All(c) | Cond::Any(c) => c.iter().for_each(|c| collect_patterns(c, out)),
        Cond::Not(c) => collect_patterns(c, out),
        Cond::Text(TextCond { matches: Some(p), .. }) => out.push(p.clone()),
        Cond::Attachment(AttachmentCond { name: Some(p), .. }) => out.push(p.clone()),
        _ => {}
    }
}

/// What the rules look at, computed once per message.
struct Msg<'a> {
    envelope: &'a Envelope,
    facts: &'a Facts,
    external: Vec<&'a Address>,
    visible_external: BTreeSet<String>,
    external_domains: BTreeSet<String>,
}

impl<'a> Msg<'a> {
    fn new(envelope: &'a Envelope, facts: &'a Facts, ctx: &Context) -> Msg<'a> {
        let external_of = |a: &str| !is_internal_domain(&domain_of(a), ctx.internal_domains);
        let external: Vec<&Address> =
            envelope.rcpt_to.iter().filter(|r| !r.is_internal(ctx.internal_domains)).collect();
        let visible_external =
            facts.to.iter().chain(&facts.cc).filter(|a| external_of(a)).map(|a| a.to_lowercase()).collect();
        let external_domains = external.iter().map(|r| r.domain().to_string()).collect();
        Msg { envelope, facts, external, visible_external, external_domains }
    }
}
