//! What a viewer may see and do. Every page and API call asks here: a
//! sender sees their own mail; an approver also the mail of the people
//! they supervise and whatever they are asked to decide; an admin the
//! org's. A message the viewer may not see is "not found", never
//! "forbidden": its id says nothing.

use crate::App;
use crate::accounts::Role;
use crate::session::Viewer;
use tomare_model::{LinkAction, MessageId, State};
use tomare_store::{AuditEntry, MessageRow, Scope, Transition};

/// Whose messages a viewer's lists show.
pub fn scope(app: &App, viewer: &Viewer) -> Scope {
    if viewer.role() == Role::Admin {
        Scope::Org(app.org)
    } else {
        Scope::Person { org: app.org, email: viewer.email().to_string(), senders: viewer.person.reports.clone() }
    }
}

/// The message is the viewer's own: they sent it (or authenticated for it).
pub fn is_own(viewer: &Viewer, m: &MessageRow) -> bool {
    m.mail_from.to_string().eq_ignore_ascii_case(viewer.email())
        || m.auth_user.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(viewer.email()))
}

fn is_report(viewer: &Viewer, m: &MessageRow) -> bool {
    let from = m.mail_from.to_string();
    viewer.person.reports.iter().any(|r| r.eq_ignore_ascii_case(&from))
}

/// A message and who is asked to decide it, if the viewer may see it.
pub async fn visible(app: &App, viewer: &Viewer, id: &MessageId) -> Result<Option<Seen>, tomare_store::StoreError> {
    let Some((message, events)) = app.store.get(id).await? else { return Ok(None) };
    if message.org_id != app.org {
        return Ok(None);
    }
    let asked = app.store.asked(id).await?;
    let me = viewer.email();
    let sees = viewer.role() == Role::Admin
        || is_own(viewer, &message)
        || is_report(viewer, &message)
        || asked.iter().any(|a| a.eq_ignore_ascii_case(me));
    Ok(sees.then_some(Seen { message, events, asked }))
}

/// A message as the viewer may see it.
pub struct Seen {
    pub message: MessageRow,
    pub events: Vec<tomare_store::EventRow>,
    pub asked: Vec<String>,
}

impl Seen {
    /// The viewer may take `action` on it (whatever its state now).
    pub fn may(&self, viewer: &Viewer, action: LinkAction) -> bool {
        let admin = viewer.role() == Role::Admin;
        match action {
            // Stopping or hurrying a message is its sender's (or an admin's).
            LinkAction::Cancel | LinkAction::Release => admin || is_own(viewer, &self.message),
            // Those asked decide (a supervisor only sees the rest of their
            // reports' mail); never one's own approval, unless an admin (who
            // may act for an absent approver).
            LinkAction::Approve | LinkAction::Deny => {
                admin
                    || (!is_own(viewer, &self.message)
                        && self.asked.iter().any(|a| a.eq_ignore_ascii_case(viewer.email())))
            }
        }
    }

    /// The action would apply now.
    pub fn applies(&self, action: LinkAction) -> bool {
        crate::links::applies(action, self.message.state)
    }
}

/// What an attempt to act did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acted {
    Done,
    /// No such message, or not one the viewer may see.
    NotFound,
    /// Seen, but not the viewer's to do.
    Forbidden,
    /// Too late (or too early): the message is in this state.
    Refused(State),
}

/// Does `action` to message `id` for `viewer`, recording who did it, how
/// and for whom (an admin deciding in an approver's place), in the
/// message's events and the audit log.
pub async fn act(
    app: &App,
    viewer: &Viewer,
    id: &MessageId,
    action: LinkAction,
    reason: &str,
) -> Result<Acted, tomare_store::StoreError> {
    let Some(seen) = visible(app, viewer, id).await? else { return Ok(Acted::NotFound) };
    if !seen.may(viewer, action) {
        return Ok(Acted::Forbidden);
    }
    let mut actor = viewer.actor();
    let deciding = matches!(action, LinkAction::Approve | LinkAction::Deny);
    let asked_me = seen.asked.iter().any(|a| a.eq_ignore_ascii_case(viewer.email()));
    if deciding && viewer.role() == Role::Admin && !asked_me {
        let others = if seen.asked.is_empty() { "-".to_string() } else { seen.asked.join(", ") };
        actor = format!("{actor} (admin, for {others})");
    }
    let reason = clean_reason(reason);
    let done = perform(app.store.as_ref(), id, action, &actor, &reason).await?;
    let acted = match done {
        Transition::Done => Acted::Done,
        Transition::NotFound => Acted::NotFound,
        Transition::Refused(s) => Acted::Refused(s),
    };
    let detail = match acted {
        Acted::Done => reason.clone(),
        Acted::Refused(s) => format!("refused: {}", s.as_str()),
        _ => "not found".into(),
    };
    audit(app, viewer, action.as_str(), id.as_str(), &detail).await;
    Ok(acted)
}

/// A comment as it is kept: one paragraph of text, at most 1000 characters.
pub fn clean_reason(reason: &str) -> String {
    reason.chars().filter(|c| !c.is_control() || *c == '\n').take(1000).collect()
}

/// The state change itself, by `actor`: what the pages, the API and the
/// notice links all do once they have decided the caller may.
pub async fn perform(
    store: &dyn tomare_store::Store,
    id: &MessageId,
    action: LinkAction,
    actor: &str,
    reason: &str,
) -> Result<Transition, tomare_store::StoreError> {
    match action {
        LinkAction::Cancel => store.cancel(id, actor).await,
        LinkAction::Release => store.release(id, actor).await,
        LinkAction::Approve => store.approve(id, actor).await,
        LinkAction::Deny => store.deny(id, actor, reason).await,
    }
}

/// One line in the audit log for what `viewer` did. A log that cannot be
/// written is logged, not a reason to undo what was done.
pub async fn audit(app: &App, viewer: &Viewer, action: &str, target: &str, detail: &str) {
    record(
        app.store.as_ref(),
        app.org,
        &AuditEntry::now(viewer.email(), viewer.via.as_str(), action, target, detail, &viewer.ip),
    )
    .await;
}

/// Writes one line of the audit log. A log that cannot be written is
/// logged, not a reason to undo what was done.
pub async fn record(store: &dyn tomare_store::Store, org: tomare_model::OrgId, entry: &AuditEntry) {
    if let Err(e) = store.audit(org, entry).await {
        tracing::error!(error = %e, "writing the audit log");
    }
}

/// One line in the audit log for what an admin did at the command line.
pub async fn record_cli(store: &dyn tomare_store::Store, org: tomare_model::OrgId, action: &str, target: &str) {
    record(store, org, &AuditEntry::now("cli", "cli", action, target, "", "")).await;
}
