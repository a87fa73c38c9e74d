//! Hold timers, delivery dispatch and the recording of outcomes.
//!
//! Three tasks beside the review stage: the *hold loop* releases held
//! messages on time, acts on approval deadlines and sends notices (and
//! notices work the CLI queued, by polling at most every half second); the
//! *dispatcher* claims due messages up to the delivery concurrency and sends
//! each through the [`Transport`]; the *finisher* records outcomes in batches,
//! schedules retries, removes finished spool files and queues DSNs.

use crate::review::{self, ForReview, Review, Reviewer};
use crate::{Acceptor, MessageMemory, Spool, dsn};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tomare_config::Config;
use tomare_model::{
    ActionLinks, Address, Envelope, LinkAction, MessageId, Metrics, NoticeKind, OnTimeout, OutcomeClass, Payload,
    RcptOutcome, RcptStatus, State, escape_controls, now_ms,
};
use tomare_store::{Claimed, DeliveryReport, RecipientResult, Store};

/// Longest sleep of the hold loop and the dispatcher: changes made by the CLI
/// (release, cancel) are seen within this time.
const POLL: Duration = Duration::from_millis(500);
/// Spool files up to this size are read on the async thread.
const INLINE_READ: i64 = 256 * 1024;
/// How long the dispatcher and finisher wait to gather work into one
/// transaction when busy.
const BATCH_WAIT: Duration = Duration::from_millis(3);

/// Sends one message to its recipients. Implemented by the relay stage.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, id: &MessageId, mail_from: &Address, rcpts: &[Address], data: &Payload) -> Vec<RcptOutcome>;
}

pub struct Queue {
    tasks: Vec<JoinHandle<()>>,
}

struct Ctx {
    store: Arc<dyn Store>,
    spool: Spool,
    acceptor: Acceptor,
    transport: Arc<dyn Transport>,
    metrics: Arc<Metrics>,
    config: Config,
    reporting_mta: String,
    links: Option<Arc<dyn ActionLinks>>,
}

impl Queue {
    /// Starts the hold loop, dispatcher and finisher. `released` is the
    /// notifier the [`Acceptor`] pokes when mail is ready to go.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        config: &Config,
        reporting_mta: String,
        store: Arc<dyn Store>,
        acceptor: Acceptor,
        review: mpsc::Receiver<ForReview>,
        review_with: Arc<dyn Review>,
        transport: Arc<dyn Transport>,
        metrics: Arc<Metrics>,
        // Review's share of the memory budget big messages take turns on
        // (delivery sends them from their files and needs none).
        memory: MessageMemory,
        released: Arc<Notify>,
        links: Option<Arc<dyn ActionLinks>>,
        shutdown: watch::Receiver<bool>,
    ) -> Queue {
        let reviewer = Arc::new(Reviewer {
            config: config.clone(),
            spool: acceptor.spool().clone(),
            store: store.clone(),
            review: review_with,
            metrics: metrics.clone(),
            memory: memory.clone(),
        });
        // Messages accepted before the last stop but never decided.
        let (resubmit_store, resubmit_acceptor) = (store.clone(), acceptor.clone());
        tokio::spawn(async move {
            let spool = resubmit_acceptor.spool().clone();
            for item in review::pending(resubmit_store.as_ref(), &spool).await {
                resubmit_acceptor.review(item).await;
            }
        });
        let ctx = Arc::new(Ctx {
            store,
            spool: acceptor.spool().clone(),
            acceptor,
            transport,
            metrics,
            config: config.clone(),
            reporting_mta,
            links,
        });
        let (done_tx, done_rx) = mpsc::channel(4096);
        let tasks = vec![
            tokio::spawn(hold_loop(ctx.clone(), released.clone(), shutdown.clone())),
            tokio::spawn(dispatcher(ctx.clone(), released.clone(), done_tx, shutdown)),
            tokio::spawn(finisher(ctx, done_rx)),
            // Ends once every Acceptor is gone (the SMTP server's and ours).
            tokio::spawn(review::run(reviewer, review, released)),
        ];
        Queue { tasks }
    }

    /// Waits for the tasks to stop after shutdown was signalled. In-flight
    /// deliveries get `grace` to finish; the rest resume after restart.
    /// True when they all stopped in time.
    pub async fn join(self, grace: Duration) -> bool {
        let all = futures_join(self.tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("deliveries still running at shutdown; they resume after restart");
            return false;
        }
        true
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

async fn hold_loop(ctx: Arc<Ctx>, released: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        let now = now_ms();
        match ctx.store.release_due(now).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(count = ids.len(), "hold time over, released");
                released.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "releasing held mail failed"),
        }
        expire_approvals(&ctx, now, &released).await;
        send_notices(&ctx).await;
        let next = ctx.store.next_wakeup().await.unwrap_or(None);
        if next.is_some_and(|t| t <= now) {
            released.notify_one();
        }
        let wait = next.map(|t| Duration::from_millis((t - now).clamp(1, 500) as u64)).unwrap_or(POLL);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Approvals past their deadline: released, handed to the deputy, or
/// rejected, as their rule said.
async fn expire_approvals(ctx: &Ctx, now: i64, released: &Notify) {
    // Half the time gone: the approvers are reminded, once.
    match ctx.store.remind_approvals(now).await {
        Ok(ids) => {
            for id in ids {
                tracing::info!(%id, "approvers reminded");
            }
        }
        Err(e) => tracing::error!(error = %e, "reminding approvers failed"),
    }
    let expired = match ctx.store.expired_approvals(now).await {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "reading expired approvals failed");
            return;
        }
    };
    if expired.is_empty() {
        return;
    }
    for a in expired {
        let result = match (a.on_timeout, &a.deputy) {
            (OnTimeout::Release, _) => ctx.store.approve(&a.id, "timeout").await,
            (OnTimeout::Escalate, Some(deputy)) => ctx.store.escalate(&a.id, deputy, now + a.timeout_ms).await,
            _ => ctx.store.deny(&a.id, "timeout", "no decision before the deadline").await,
        };
        match result {
            Ok(_) => tracing::info!(id = %a.id, on_timeout = a.on_timeout.as_str(), "approval deadline passed"),
            Err(e) => tracing::error!(id = %a.id, error = %e, "acting on an expired approval failed"),
        }
    }
    released.notify_one();
}

/// Tells senders about their rejected messages, and drops those messages'
/// spool files when nothing more will read them (no archive).
async fn send_notices(ctx: &Ctx) {
    let notices = match ctx.store.take_notices(100).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "reading notices failed");
            return;
        }
    };
    for n in notices {
        if matches!(n.kind, NoticeKind::Rejected | NoticeKind::Denied) && !ctx.config.archive.enabled {
            ctx.spool.remove(&n.id);
        }
        let to = if n.recipient.is_empty() { n.mail_from.clone() } else { n.recipient.clone() };
        if to.is_empty() {
            continue;
        }
        let Ok(to_address) = to.parse::<Address>() else {
            tracing::error!(id = %n.id, to = %escape_controls(&to), "notice not sent: not an address");
            continue;
        };
        let links = notice_links(ctx, &n, &to);
        let about = About::read(ctx, &n, &to).await;
        let until = n.release_at.map(|at| tomare_model::local_time(at, ctx.config.org.utc_offset_minutes()));
        let data = crate::notice::notice(&crate::notice::SenderNotice {
            reporting_mta: &ctx.reporting_mta,
            org_name: &ctx.config.org.name,
            postmaster_domain: ctx.postmaster_domain(),
            queue_id: n.id.as_str(),
            mail_from: &n.mail_from,
            to: &to,
            subject: &n.subject,
            message_id_header: &n.message_id_header,
            kind: n.kind,
            reason: if n.reason.is_empty() { &about.reasons } else { &n.reason },
            now: now_ms(),
            links: &links,
            lang: about.lang,
            recipients: &about.recipients,
            attachments: &about.attachments,
            hits: if matches!(n.kind, NoticeKind::ApprovalRequest | NoticeKind::Reminder) { &about.hits } else { &[] },
            changes: if n.kind == NoticeKind::Held || n.kind == NoticeKind::AwaitingApproval {
                &about.changes
            } else {
                &[]
            },
            until: until.as_deref(),
        });
        match ctx.queue_own(to_address, data).await {
            Ok(id) => tracing::info!(original = %n.id, notice = %id, kind = %n.kind, "notice queued"),
            Err(e) => tracing::error!(id = %n.id, error = %e, "could not queue the notice"),
        }
    }
}

/// What a notice says of its message besides its subject: read from the
/// store when it is sent (a message gone from the store says less, not
/// nothing).
#[derive(Default)]
struct About {
    lang: Option<tomare_model::i18n::Lang>,
    recipients: Vec<(String, bool)>,
    attachments: Vec<String>,
    hits: Vec<String>,
    changes: Vec<String>,
    /// The rules' reasons (for a notice that has none of its own: a reminder).
    reasons: String,
}

impl About {
    async fn read(ctx: &Ctx, n: &tomare_store::Notice, to: &str) -> About {
        use tomare_model::i18n::{Lang, t};
        let lang = ctx.store.user(to).await.ok().flatten().and_then(|u| Lang::from_code(&u.lang));
        let mut about = About { lang, ..About::default() };
        let internal = &ctx.config.org.internal_domains;
        if let Ok(Some((m, _))) = ctx.store.get(&n.id).await {
            about.recipients =
                m.recipients.iter().map(|r| (r.address.to_string(), !r.address.is_internal(internal))).collect();
        }
        if let Ok(Some(r)) = ctx.store.reviewed(&n.id).await {
            about.attachments = r.facts.attachments.iter().map(|a| a.name.clone()).filter(|a| !a.is_empty()).collect();
            about.hits = r.facts.detections.iter().map(tomare_model::Detection::line).collect();
            if let Some(v) = &r.verdict {
                about.reasons = v.rules.iter().map(|f| f.reason.as_str()).collect::<Vec<_>>().join("; ");
                // In the person's language, or both.
                let say = |key: &str, arg: &dyn std::fmt::Display| match about.lang {
                    Some(l) => t(l, key, &[arg]),
                    None => format!("{} / {}", t(Lang::Ja, key, &[arg]), t(Lang::En, key, &[arg])),
                };
                if v.convert_to_bcc.is_some() {
                    about.changes.push(say("notice.change.bcc", &""));
                }
                for a in &v.add_recipients {
                    about.changes.push(say("notice.change.add", a));
                }
                for (name, value) in &v.add_headers {
                    about.changes.push(say("notice.change.header", &format!("{name}: {value}")));
                }
            }
        }
        about
    }
}

/// The one-click links a notice carries, for the person it goes to: the
/// sender of a held message may cancel it or send it now, of a waiting one
/// cancel it; an approver approves or denies. They expire when the hold or
/// the approval ends.
fn notice_links(ctx: &Ctx, n: &tomare_store::Notice, to: &str) -> Vec<(LinkAction, String)> {
    let Some(links) = &ctx.links else { return Vec::new() };
    let actions: &[LinkAction] = match n.kind {
        NoticeKind::Held => &[LinkAction::Cancel, LinkAction::Release],
        NoticeKind::AwaitingApproval => &[LinkAction::Cancel],
        NoticeKind::ApprovalRequest | NoticeKind::Reminder => &[LinkAction::Approve, LinkAction::Deny],
        NoticeKind::Rejected
        | NoticeKind::Denied
        | NoticeKind::Approved
        | NoticeKind::Cancelled
        | NoticeKind::Released => &[],
    };
    let Some(until) = n.release_at.filter(|at| *at > now_ms()) else { return Vec::new() };
    actions.iter().map(|a| (*a, links.link(&n.id, *a, to, until))).collect()
}

impl Ctx {
    /// The domain our own mail (DSNs, notices) comes from.
    fn postmaster_domain(&self) -> &str {
        self.config.org.postmaster_domain()
    }

    /// Queues a message of our own (DSN or notice): null sender, no rules,
    /// never answered by another DSN.
    async fn queue_own(&self, to: Address, data: Vec<u8>) -> Result<MessageId, Arc<crate::AcceptError>> {
        let envelope = Envelope {
            mail_from: Address::null(),
            rcpt_to: vec![to],
            helo: self.reporting_mta.clone(),
            client_ip: "127.0.0.1".into(),
            auth_user: None,
        };
        self.acceptor.accept(envelope, data, true).await
    }
}

type Done = (Claimed, Vec<RcptOutcome>);

async fn dispatcher(
    ctx: Arc<Ctx>,
    released: Arc<Notify>,
    done: mpsc::Sender<Done>,
    mut shutdown: watch::Receiver<bool>,
) {
    let concurrency = ctx.config.delivery.concurrency;
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut busy = false;
    while !*shutdown.borrow() {
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        if busy {
            // Under load, let a few more slots free up so that one claim
            // transaction takes several messages instead of one.
            tokio::time::sleep(BATCH_WAIT).await;
        }
        let free = slots.available_permits() + 1;
        let claimed = match ctx.store.claim(now_ms(), free).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "claiming messages for delivery failed");
                Vec::new()
            }
        };
        busy = !claimed.is_empty();
        if claimed.is_empty() {
            drop(first);
            tokio::select! {
                _ = released.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let mut permits = vec![first];
        // Only this task takes permits, so the ones counted are still free.
        while permits.len() < claimed.len() {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let permits = permits.into_iter().map(Some).chain(std::iter::repeat_with(|| None));
        for (message, permit) in claimed.into_iter().zip(permits) {
            let ctx = ctx.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let outcomes = deliver(&ctx, &message).await;
                let _ = done.send((message, outcomes)).await;
                drop(permit);
            });
        }
    }
}

async fn deliver(ctx: &Ctx, message: &Claimed) -> Vec<RcptOutcome> {
    // Protected attachments: recipients outside get a copy of their own
    // (a link or a zip instead of the files), each sent on its own.
    let (link, zip) = if message.is_dsn { (false, false) } else { ctx.spool.copies(&message.id) };
    if !link && !zip {
        return deliver_copy(ctx, message, crate::spool::Copy::Plain, &message.recipients).await;
    }
    let mut groups: Vec<(crate::spool::Copy, Vec<Address>)> = Vec::new();
    for r in &message.recipients {
        let copy = crate::spool::copy_for(&ctx.config, r, link, zip);
        match groups.iter_mut().find(|(c, _)| *c == copy) {
            Some((_, list)) => list.push(r.clone()),
            None => groups.push((copy, vec![r.clone()])),
        }
    }
    let mut outcomes = Vec::with_capacity(message.recipients.len());
    for (copy, rcpts) in groups {
        outcomes.extend(deliver_copy(ctx, message, copy, &rcpts).await);
    }
    outcomes
}

async fn deliver_copy(ctx: &Ctx, message: &Claimed, copy: crate::spool::Copy, rcpts: &[Address]) -> Vec<RcptOutcome> {
    // A small file comes from the page cache in microseconds: not worth a
    // trip to a blocking thread. A big one is sent from its file, a piece
    // at a time, so a slow next hop holds no memory (and no budget).
    let read = if copy == crate::spool::Copy::Plain && message.size <= INLINE_READ {
        ctx.spool.read_for_delivery(&message.id).map(Payload::Bytes)
    } else {
        let path = ctx.spool.path_of_copy(&message.id, copy);
        std::fs::metadata(&path).map(|m| Payload::File { path, len: m.len() })
    };
    let data = match read {
        Ok(data) => data,
        Err(e) => {
            let reply = format!("spool file unreadable: {e}");
            return rcpts
                .iter()
                .map(|r| RcptOutcome { address: r.clone(), class: OutcomeClass::Temporary, reply: reply.clone() })
                .collect();
        }
    };
    ctx.transport.send(&message.id, &message.mail_from, rcpts, &data).await
}

/// Turns one attempt's outcomes into the recorded report: which recipients
/// are done, which wait for a retry, and whether the message has expired.
pub fn report(config: &Config, message: &Claimed, outcomes: &[RcptOutcome], now: i64) -> DeliveryReport {
    let expires_at = message.received_at + config.delivery.max_lifetime.0.as_millis() as i64;
    let expired = now >= expires_at;
    let results: Vec<RecipientResult> = message
        .recipients
        .iter()
        .map(|address| {
            let outcome = outcomes.iter().find(|o| &o.address == address);
            let (class, reply) = match outcome {
                Some(o) => (o.class, o.reply.clone()),
                None => (OutcomeClass::Temporary, "no result from delivery".to_string()),
            };
            let status = match class {
                OutcomeClass::Delivered => RcptStatus::Delivered,
                OutcomeClass::Permanent => RcptStatus::Failed,
                OutcomeClass::Temporary if expired => RcptStatus::Failed,
                OutcomeClass::Temporary => RcptStatus::Deferred,
            };
            let reply = if class == OutcomeClass::Temporary && expired {
                format!("gave up after {}: {reply}", humanize(expires_at - message.received_at))
            } else {
                reply
            };
            RecipientResult { address: address.clone(), status, reply }
        })
        .collect();
    let deferred = results.iter().filter(|r| r.status == RcptStatus::Deferred).count();
    let failed = results.iter().filter(|r| r.status == RcptStatus::Failed).count();
    let delivered = results.len() - deferred - failed;
    let (state, next_attempt_at) = if deferred > 0 {
        let wait = config.delivery.retry_after(message.attempts as u32 + 1).as_millis() as i64;
        // The last try happens at the deadline, not a whole backoff after it.
        (State::Deferred, Some((now + wait).min(expires_at)))
    } else if failed > 0 {
        (State::Failed, None)
    } else {
        (State::Delivered, None)
    };
    let detail =
        format!("attempt {}: {delivered} delivered, {deferred} deferred, {failed} failed", message.attempts + 1);
    DeliveryReport { id: message.id.clone(), results, state, next_attempt_at, detail }
}

fn humanize(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

async fn finisher(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Done>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        if batch.len() < 32 {
            // Results come in one by one under load: gather a few more to
            // record them in one transaction. A record only trails the
            // delivery it describes; nothing waits for it.
            tokio::time::sleep(BATCH_WAIT).await;
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
        }
        let now = now_ms();
        for (_, outcomes) in &batch {
            let delivered = outcomes.iter().any(|o| o.class == OutcomeClass::Delivered);
            let temporary = !outcomes.is_empty() && outcomes.iter().all(|o| o.class == OutcomeClass::Temporary);
            ctx.metrics.health.delivery_result(delivered, temporary);
        }
        let reports: Vec<DeliveryReport> = batch.iter().map(|(m, o)| report(&ctx.config, m, o, now)).collect();
        // A DSN's copy of the header block is read before the state is
        // final: once it is, the archiver may take the message and its
        // spool file is recycled for another one.
        let heads: Vec<Option<Vec<u8>>> = batch
            .iter()
            .zip(&reports)
            .map(|((m, _), r)| {
                let owed =
                    r.results.iter().any(|x| x.status == RcptStatus::Failed) && !m.mail_from.is_null() && !m.is_dsn;
                owed.then(|| ctx.spool.read_head(&m.id, 256 * 1024).unwrap_or_default())
            })
            .collect();
        if let Err(e) = ctx.store.finish(&reports).await {
            // Left `delivering`: recovered and retried after a restart.
            tracing::error!(error = %e, "recording delivery results failed");
            batch.clear();
            continue;
        }
        let mut finished = Vec::new();
        for (((message, _), report), head) in batch.drain(..).zip(&reports).zip(heads) {
            let m = &ctx.metrics;
            match report.state {
                State::Delivered => m.delivered.fetch_add(1, Relaxed),
                State::Deferred => m.deferred.fetch_add(1, Relaxed),
                _ => m.failed.fetch_add(1, Relaxed),
            };
            tracing::info!(id = %message.id, state = report.state.as_str(), detail = %report.detail, "delivery attempt");
            let failed: Vec<&RecipientResult> =
                report.results.iter().filter(|r| r.status == RcptStatus::Failed).collect();
            if let (false, Some(head)) = (failed.is_empty(), head) {
                send_dsn(&ctx, &message, &failed, &head).await;
            }
            if report.state.is_final() {
                finished.push(message.id);
            }
        }
        // With the archive on, the archiver removes them once archived.
        if !finished.is_empty() && !ctx.config.archive.enabled {
            let spool = ctx.spool.clone();
            let _ = tokio::task::spawn_blocking(move || finished.iter().for_each(|id| spool.remove(id))).await;
        }
    }
}

/// A DSN to the sender with `original` (the message's first 256 KiB: only
/// its header block goes back). The caller checks it is owed: never a
/// bounce for a bounce (the null sender, our own DSNs).
async fn send_dsn(ctx: &Ctx, message: &Claimed, failed: &[&RecipientResult], original: &[u8]) {
    let failures: Vec<(String, String)> = failed.iter().map(|r| (r.address.to_string(), r.reply.clone())).collect();
    let mail_from = message.mail_from.to_string();
    let data = dsn::build(&dsn::Dsn {
        reporting_mta: &ctx.reporting_mta,
        org_name: &ctx.config.org.name,
        postmaster_domain: ctx.postmaster_domain(),
        queue_id: message.id.as_str(),
        mail_from: &mail_from,
        received_at: message.received_at,
        failures: &failures,
        original,
        now: now_ms(),
    });
    match ctx.queue_own(message.mail_from.clone(), data).await {
        Ok(id) => {
            ctx.metrics.dsn_sent.fetch_add(1, Relaxed);
            tracing::info!(original = %message.id, dsn = %id, "DSN queued for the sender");
        }
        Err(e) => tracing::error!(id = %message.id, error = %e, "could not queue the DSN"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(attempts: i64, received_at: i64) -> Claimed {
        Claimed {
            id: MessageId::generate(received_at),
            org_id: 1,
            mail_from: "s@example.com".parse().unwrap(),
            recipients: vec!["a@x.test".parse().unwrap(), "b@x.test".parse().unwrap(), "c@x.test".parse().unwrap()],
            attempts,
            received_at,
            is_dsn: false,
            size: 100,
        }
    }

    fn outcome(a: &str, class: OutcomeClass) -> RcptOutcome {
        RcptOutcome { address: a.parse().unwrap(), class, reply: "r".into() }
    }

    #[test]
    fn mixed_outcomes_defer_with_backoff() {
        let config = Config::default();
        let m = claimed(0, 0);
        let o = [
            outcome("a@x.test", OutcomeClass::Delivered),
            outcome("b@x.test", OutcomeClass::Temporary),
            outcome("c@x.test", OutcomeClass::Permanent),
        ];
        let r = report(&config, &m, &o, 1000);
        assert_eq!(r.state, State::Deferred);
        assert_eq!(r.next_attempt_at, Some(1000 + 60_000));
        let s: Vec<RcptStatus> = r.results.iter().map(|r| r.status).collect();
        assert_eq!(s, [RcptStatus::Delivered, RcptStatus::Deferred, RcptStatus::Failed]);
        // Third attempt waits the third step of the schedule.
        let r = report(&config, &claimed(2, 0), &o, 1000);
        assert_eq!(r.next_attempt_at, Some(1000 + 15 * 60_000));
    }

    #[test]
    fn expiry_fails_what_is_still_temporary() {
        let config = Config::default();
        let lifetime = config.delivery.max_lifetime.0.as_millis() as i64;
        let m = claimed(30, 0);
        let o = [outcome("a@x.test", OutcomeClass::Delivered), outcome("b@x.test", OutcomeClass::Temporary)];
        let r = report(&config, &m, &o, lifetime - 1000);
        assert_eq!(r.next_attempt_at, Some(lifetime), "last try at the deadline");
        let r = report(&config, &m, &o, lifetime);
        assert_eq!(r.state, State::Failed);
        assert!(r.results[1].reply.starts_with("gave up after 5d"), "{}", r.results[1].reply);
        assert_eq!(r.results[2].status, RcptStatus::Failed, "a recipient with no result is not lost");
    }
}
