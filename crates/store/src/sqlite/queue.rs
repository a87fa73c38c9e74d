//! [`QueueStore`] on SQLite.

use super::*;
use crate::*;
use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Row};

#[async_trait]
impl QueueStore for SqliteStore {
    async fn ensure_org(&self, name: &str) -> Result<OrgId> {
        sqlx::query("INSERT INTO orgs (name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING")
            .bind(name)
            .bind(tomare_model::now_ms())
            .execute(&self.writer)
            .await?;
        Ok(sqlx::query_scalar("SELECT id FROM orgs WHERE name = ?").bind(name).fetch_one(&self.writer).await?)
    }

    async fn find_org(&self, name: &str) -> Result<Option<OrgId>> {
        Ok(sqlx::query_scalar("SELECT id FROM orgs WHERE name = ?").bind(name).fetch_optional(&self.reader).await?)
    }

    async fn insert_messages(&self, batch: &[NewMessage]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // The 250 promises the record is on disk: the commit is durable.
        insert_batch(&self.writer, batch, tomare_model::now_ms()).await
    }

    async fn decide(&self, batch: &[Decision]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = tomare_model::now_ms();
        let mut tx = write_tx(&self.writer, false).await?;
        let mut events = Vec::with_capacity(batch.len() * 2);
        // Everything after each chunk's UPDATE goes in one script.
        let mut s = Script::default();
        for chunk in batch.chunks(MAX_PARAMS / 3) {
            let sql = format!(
                "UPDATE messages SET state = v.column2, release_at = v.column3, updated_at = ? FROM (VALUES {}) AS v \
                 WHERE messages.id = v.column1 AND messages.state = 'received' RETURNING messages.id, messages.org_id",
                placeholders(chunk.len(), 3)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for d in chunk {
                q = q.bind(d.id.as_str()).bind(d.state.as_str()).bind(d.release_at);
            }
            let updated: Vec<(String, i64)> = q
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_>>()?;
            let decided: Vec<(&Decision, i64)> = chunk
                .iter()
                .filter_map(|d| updated.iter().find(|(id, _)| id == d.id.as_str()).map(|(_, org)| (d, *org)))
                .collect();
            if decided.is_empty() {
                continue;
            }
            s.push(&format!(
                "INSERT OR REPLACE INTO facts (message_id, org_id, json, verdict, created_at) VALUES {}",
                placeholders(decided.len(), 5)
            ));
            for (d, org) in &decided {
                let (facts, verdict) = stored_review(&d.facts, d.verdict.as_ref());
                s.bind(d.id.as_str()).bind(*org).bind(facts).bind(verdict).bind(now);
            }
            for (d, org) in decided {
                if let (State::AwaitingApproval, Some(a)) = (d.state, &d.approval) {
                    s.push(
                        "INSERT OR REPLACE INTO approvals (message_id, org_id, approver, deputy, on_timeout, timeout_ms, deadline) \
                         VALUES (?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(d.id.as_str())
                    .bind(org)
                    .bind(&a.approver)
                    .bind(&a.deputy)
                    .bind(a.on_timeout.as_str())
                    .bind(a.timeout_ms)
                    .bind(d.release_at);
                }
                if let Some(p) = &d.protection {
                    super::protect::push_protection(&mut s, &d.id, org, p, now);
                }
                if d.state == State::Rejected {
                    push_notice(&mut s, &d.id, org, NoticeKind::Rejected, &d.reasons, "", now);
                }
                for (kind, recipient) in &d.notify {
                    push_notice(&mut s, &d.id, org, *kind, &d.reasons, recipient, now);
                }
                events.push(Event {
                    org_id: org,
                    message_id: d.id.as_str(),
                    kind: "inspected",
                    actor: "inspect",
                    detail: d.summary.clone(),
                });
                for address in &d.add_recipients {
                    s.push(
                        "INSERT INTO recipients (message_id, org_id, idx, address, status, updated_at) \
                         SELECT ?, ?, COALESCE(MAX(idx), -1) + 1, ?, 'pending', ? FROM recipients WHERE message_id = ?",
                    )
                    .bind(d.id.as_str())
                    .bind(org)
                    .bind(address.to_string())
                    .bind(now)
                    .bind(d.id.as_str());
                }
                if d.rewritten || !d.add_recipients.is_empty() {
                    let mut what = Vec::new();
                    if d.rewritten {
                        what.push("message rewritten".to_string());
                    }
                    if !d.add_recipients.is_empty() {
                        let added: Vec<String> = d.add_recipients.iter().map(Address::to_string).collect();
                        what.push(format!("recipients added: {}", added.join(", ")));
                    }
                    events.push(Event {
                        org_id: org,
                        message_id: d.id.as_str(),
                        kind: "transformed",
                        actor: "policy",
                        detail: what.join("; "),
                    });
                }
                let detail = match (d.state, &d.approval) {
                    (State::Held, _) => format!("until {} — {}", tomare_model::rfc3339(d.release_at), d.reasons),
                    (State::AwaitingApproval, Some(a)) => format!(
                        "approver {} until {} — {}",
                        if a.approver.is_empty() { "(none found)" } else { &a.approver },
                        tomare_model::rfc3339(d.release_at),
                        d.reasons
                    ),
                    _ => d.reasons.clone(),
                };
                events.push(Event {
                    org_id: org,
                    message_id: d.id.as_str(),
                    kind: d.state.as_str(),
                    actor: "policy",
                    detail,
                });
            }
        }
        push_events(&mut s, now, &events);
        s.run(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reviewed(&self, id: &MessageId) -> Result<Option<Reviewed>> {
        let row = sqlx::query("SELECT json, verdict FROM facts WHERE message_id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| read_review(id.as_str(), &r.try_get::<String, _>(0)?, &r.try_get::<String, _>(1)?)).transpose()
    }

    async fn approval(&self, id: &MessageId) -> Result<Option<ApprovalRequest>> {
        let row = sqlx::query("SELECT approver, deputy, on_timeout, timeout_ms FROM approvals WHERE message_id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| {
            Ok(ApprovalRequest {
                approver: r.try_get(0)?,
                deputy: r.try_get(1)?,
                on_timeout: parse_on_timeout(id.as_str(), &r.try_get::<String, _>(2)?),
                timeout_ms: r.try_get(3)?,
            })
        })
        .transpose()
    }

    async fn approve(&self, id: &MessageId, actor: &str) -> Result<Transition> {
        let t = transition(
            &self.writer,
            id,
            actor,
            Move {
                from: &[State::AwaitingApproval],
                to: State::Released,
                set_release_now: true,
                detail: "approved",
                tell: Some(NoticeKind::Approved),
            },
        )
        .await?;
        if t == Transition::Done {
            decide_approval(&self.writer, id, "approved", actor, "").await?;
        }
        Ok(t)
    }

    async fn deny(&self, id: &MessageId, actor: &str, reason: &str) -> Result<Transition> {
        let t = transition(
            &self.writer,
            id,
            actor,
            Move {
                from: &[State::AwaitingApproval],
                to: State::Rejected,
                set_release_now: false,
                detail: reason,
                tell: None,
            },
        )
        .await?;
        if t == Transition::Done {
            decide_approval(&self.writer, id, "denied", actor, reason).await?;
            let org: i64 = sqlx::query_scalar("SELECT org_id FROM messages WHERE id = ?")
                .bind(id.as_str())
                .fetch_one(&self.writer)
                .await?;
            let mut tx = write_tx(&self.writer, false).await?;
            add_notice(&mut tx, id, org, NoticeKind::Denied, reason, "", tomare_model::now_ms()).await?;
            tx.commit().await?;
        }
        Ok(t)
    }

    async fn expired_approvals(&self, now: i64) -> Result<Vec<ExpiredApproval>> {
        let rows = sqlx::query(
            "SELECT m.id, a.on_timeout, a.deputy, a.timeout_ms FROM messages m JOIN approvals a ON a.message_id = m.id \
             WHERE m.state = 'awaiting_approval' AND m.release_at <= ?",
        )
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Ok(ExpiredApproval {
                    on_timeout: parse_on_timeout(&id, &r.try_get::<String, _>(1)?),
                    id: parse_id(id)?,
                    deputy: r.try_get(2)?,
                    timeout_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn remind_approvals(&self, now: i64) -> Result<Vec<MessageId>> {
        let mut tx = write_tx(&self.writer, false).await?;
        let rows = sqlx::query(
            "UPDATE approvals SET reminded_at = ?1 WHERE reminded_at IS NULL AND message_id IN \
             (SELECT m.id FROM messages m JOIN approvals a ON a.message_id = m.id \
              WHERE m.state = 'awaiting_approval' AND m.release_at > ?1 AND m.release_at - a.timeout_ms / 2 <= ?1) \
             RETURNING message_id, org_id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut s = Script::default();
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = parse_id(r.try_get(0)?)?;
            let org: i64 = r.try_get(1)?;
            let asked: Vec<String> = sqlx::query_scalar("SELECT email FROM approval_asked WHERE message_id = ?")
                .bind(id.as_str())
                .fetch_all(&mut *tx)
                .await?;
            for who in &asked {
                push_notice(&mut s, &id, org, NoticeKind::Reminder, "", who, now);
            }
            ids.push(id);
        }
        s.run(&mut tx).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn escalate(&self, id: &MessageId, deputy: &str, deadline: i64) -> Result<Transition> {
        let now = tomare_model::now_ms();
        let mut tx = write_tx(&self.writer, false).await?;
        let org: Option<i64> = sqlx::query_scalar(
            "UPDATE messages SET release_at = ?, updated_at = ? WHERE id = ? AND state = 'awaiting_approval' RETURNING org_id",
        )
        .bind(deadline)
        .bind(now)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(org) = org else { return Ok(Transition::NotFound) };
        sqlx::query(
            "UPDATE approvals SET approver = ?, deputy = NULL, on_timeout = 'reject', deadline = ?, reminded_at = NULL \
             WHERE message_id = ?",
        )
        .bind(deputy)
        .bind(deadline)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if deputy.contains('@') {
            add_notice(&mut tx, id, org, NoticeKind::ApprovalRequest, "escalated: no decision in time", deputy, now)
                .await?;
        }
        let detail = format!("no decision in time; now {deputy} until {}", tomare_model::rfc3339(deadline));
        let event = Event { org_id: org, message_id: id.as_str(), kind: "escalated", actor: "policy", detail };
        insert_events(&mut tx, now, &[event]).await?;
        tx.commit().await?;
        Ok(Transition::Done)
    }

    async fn take_notices(&self, limit: i64) -> Result<Vec<Notice>> {
        let mut tx = write_tx(&self.writer, false).await?;
        let rows = sqlx::query(
            "SELECT n.message_id, n.org_id, n.kind, n.reason, m.mail_from, m.subject, m.message_id_header, n.id, n.recipient, m.release_at \
             FROM notices n JOIN messages m ON m.id = n.message_id ORDER BY n.id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut gone = Vec::new();
        for r in &rows {
            let stored: String = r.try_get(2)?;
            let Some(kind) = NoticeKind::parse(&stored) else {
                // Not one of ours (a newer tomare's?): dropped, and said.
                tracing::error!(kind = %tomare_model::escape_controls(&stored), "a notice of an unknown kind is dropped");
                gone.push(r.try_get::<i64, _>(7)?);
                continue;
            };
            out.push(Notice {
                id: parse_id(r.try_get(0)?)?,
                org_id: r.try_get(1)?,
                kind,
                reason: r.try_get(3)?,
                mail_from: r.try_get(4)?,
                subject: r.try_get(5)?,
                message_id_header: r.try_get(6)?,
                notice_id: r.try_get(7)?,
                recipient: r.try_get(8)?,
                release_at: r.try_get(9)?,
            });
        }
        for id in out.iter().map(|n| n.notice_id).chain(gone) {
            sqlx::query("DELETE FROM notices WHERE id = ?").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn release_due(&self, now: i64) -> Result<Vec<MessageId>> {
        let mut tx = write_tx(&self.writer, false).await?;
        let rows = sqlx::query(
            "UPDATE messages SET state = 'released', updated_at = ? WHERE state = 'held' AND release_at <= ? RETURNING id, org_id",
        )
        .bind(now)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut orgs = Vec::with_capacity(rows.len());
        for r in &rows {
            ids.push(parse_id(r.try_get(0)?)?);
            orgs.push(r.try_get::<i64, _>(1)?);
        }
        let events: Vec<Event> = ids
            .iter()
            .zip(&orgs)
            .map(|(id, org)| Event {
                org_id: *org,
                message_id: id.as_str(),
                kind: "released",
                actor: "hold",
                detail: "hold time over".into(),
            })
            .collect();
        insert_events(&mut tx, now, &events).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn next_wakeup(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(t) FROM (SELECT MIN(release_at) AS t FROM messages WHERE state IN ('held', 'awaiting_approval') \
             UNION ALL SELECT MIN(next_attempt_at) FROM messages WHERE state = 'deferred')",
        )
        .fetch_one(&self.reader)
        .await?)
    }

    async fn release(&self, id: &MessageId, actor: &str) -> Result<Transition> {
        let tell = Some(NoticeKind::Released);
        let m = Move { from: &[State::Held], to: State::Released, set_release_now: true, detail: "", tell };
        transition(&self.writer, id, actor, m).await
    }

    async fn cancel(&self, id: &MessageId, actor: &str) -> Result<Transition> {
        let tell = Some(NoticeKind::Cancelled);
        let m = Move { from: &State::CANCELLABLE, to: State::Cancelled, set_release_now: false, detail: "", tell };
        transition(&self.writer, id, actor, m).await
    }

    async fn used_link(&self, nonce: &str) -> Result<Option<UsedLink>> {
        let row =
            sqlx::query("SELECT nonce, message_id, action, person, outcome, used_at FROM used_links WHERE nonce = ?")
                .bind(nonce)
                .fetch_optional(&self.writer)
                .await?;
        row.map(|r| used_link_from_row(&r)).transpose()
    }

    async fn record_link(&self, used: &UsedLink) -> Result<Option<UsedLink>> {
        let outcome = match used.outcome {
            Transition::Done => "done".to_string(),
            Transition::NotFound => "not_found".to_string(),
            Transition::Refused(s) => format!("refused:{}", s.as_str()),
        };
        let inserted = sqlx::query(
            "INSERT INTO used_links (nonce, message_id, action, person, outcome, used_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT(nonce) DO NOTHING",
        )
        .bind(&used.nonce)
        .bind(used.message_id.as_str())
        .bind(used.action.as_str())
        .bind(&used.person)
        .bind(outcome)
        .bind(used.used_at)
        .execute(&self.writer)
        .await?
        .rows_affected();
        if inserted == 1 { Ok(None) } else { self.used_link(&used.nonce).await }
    }

    async fn claim(&self, now: i64, limit: usize) -> Result<Vec<Claimed>> {
        let mut tx = write_tx(&self.writer, false).await?;
        let rows = sqlx::query(
            "UPDATE messages SET state = 'delivering', updated_at = ? WHERE id IN (\
               SELECT id FROM messages WHERE state = 'released' \
               UNION ALL SELECT id FROM messages WHERE state = 'deferred' AND next_attempt_at <= ? \
               ORDER BY id LIMIT ?) \
             RETURNING id, org_id, mail_from, attempts, received_at, is_dsn, size",
        )
        .bind(now)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            claimed.push(Claimed {
                id: parse_id(r.try_get(0)?)?,
                org_id: r.try_get(1)?,
                // A row that does not parse (edited by hand) must not stop
                // every delivery: it goes without a sender (no DSN).
                mail_from: parse_address(&r.try_get::<String, _>(0)?, r.try_get(2)?).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "a claimed message's sender is not an address: sent as <>");
                    Address::null()
                }),
                recipients: Vec::new(),
                attempts: r.try_get(3)?,
                received_at: r.try_get(4)?,
                is_dsn: r.try_get(5)?,
                size: r.try_get(6)?,
            });
        }
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(claimed);
        }
        // The recipients and the claim's events in one script.
        let mut s = Script::default();
        s.push(&format!(
            "SELECT message_id, address FROM recipients WHERE status IN ('pending', 'deferred') AND message_id IN ({}) ORDER BY message_id, idx",
            vec!["?"; claimed.len()].join(",")
        ));
        for c in &claimed {
            s.bind(c.id.as_str());
        }
        let events: Vec<Event> = claimed
            .iter()
            .map(|c| Event {
                org_id: c.org_id,
                message_id: c.id.as_str(),
                kind: "delivering",
                actor: "relay",
                detail: format!("attempt {}", c.attempts + 1),
            })
            .collect();
        push_events(&mut s, now, &events);
        let rows = s.fetch(&mut tx).await?;
        drop(events);
        let mut unreadable: Vec<(String, String)> = Vec::new();
        for r in rows {
            let mid: String = r.try_get(0)?;
            let stored: String = r.try_get(1)?;
            if let Some(c) = claimed.iter_mut().find(|c| c.id.as_str() == mid) {
                match parse_address(&mid, stored.clone()) {
                    Ok(a) => c.recipients.push(a),
                    // Failed, not retried for ever, and the rest still go.
                    Err(e) => {
                        tracing::error!(error = %e, "a claimed recipient is not an address: failed");
                        unreadable.push((mid, stored));
                    }
                }
            }
        }
        for (mid, stored) in &unreadable {
            sqlx::query(
                "UPDATE recipients SET status = 'failed', reply = '553 5.1.3 not an address' \
                 WHERE message_id = ? AND address = ?",
            )
            .bind(mid)
            .bind(stored)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish(&self, reports: &[DeliveryReport]) -> Result<()> {
        let now = tomare_model::now_ms();
        let mut tx = write_tx(&self.writer, false).await?;
        // One statement per table for the whole batch (UPDATE ... FROM VALUES),
        // not one per message: the batch is what makes recording cheap.
        let results: Vec<(&DeliveryReport, &RecipientResult)> =
            reports.iter().flat_map(|r| r.results.iter().map(move |res| (r, res))).collect();
        // Both UPDATEs in one script, then contacts and events in another.
        let mut s = Script::default();
        for chunk in results.chunks(MAX_PARAMS / 4) {
            s.push(&format!(
                "UPDATE recipients SET status = v.column3, reply = v.column4, attempts = attempts + 1, updated_at = ? \
                 FROM (VALUES {}) AS v \
                 WHERE recipients.message_id = v.column1 AND recipients.address = v.column2 \
                 AND recipients.status IN ('pending', 'deferred')",
                placeholders(chunk.len(), 4)
            ))
            .bind(now);
            for (r, res) in chunk {
                s.bind(r.id.as_str()).bind(res.address.to_string()).bind(res.status.as_str()).bind(&res.reply);
            }
        }
        for chunk in reports.chunks(MAX_PARAMS / 3) {
            s.push(&format!(
                "UPDATE messages SET state = v.column2, next_attempt_at = v.column3, attempts = attempts + 1, \
                 updated_at = ? FROM (VALUES {}) AS v \
                 WHERE messages.id = v.column1 AND messages.state = 'delivering' RETURNING messages.id, messages.org_id",
                placeholders(chunk.len(), 3)
            ))
            .bind(now);
            for r in chunk {
                s.bind(r.id.as_str()).bind(r.state.as_str()).bind(r.next_attempt_at);
            }
        }
        let mut events = Vec::with_capacity(reports.len());
        for row in s.fetch(&mut tx).await? {
            let id: String = row.try_get(0)?;
            let org_id: i64 = row.try_get(1)?;
            if let Some(r) = reports.iter().find(|r| r.id.as_str() == id) {
                events.push(Event {
                    org_id,
                    message_id: r.id.as_str(),
                    kind: r.state.as_str(),
                    actor: "relay",
                    detail: r.detail.clone(),
                });
            }
        }
        // Recipient history: every domain something was delivered to.
        let mut contacts: Vec<(i64, String)> = Vec::new();
        for e in &events {
            let Some(r) = reports.iter().find(|r| r.id.as_str() == e.message_id) else { continue };
            for res in r.results.iter().filter(|res| res.status == RcptStatus::Delivered) {
                let d = res.address.domain().to_string();
                if !d.is_empty() && !contacts.iter().any(|(o, x)| *o == e.org_id && *x == d) {
                    contacts.push((e.org_id, d));
                }
            }
        }
        let mut s = Script::default();
        push_contacts(&mut s, &contacts, now);
        push_events(&mut s, now, &events);
        s.run(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recover(&self) -> Result<u64> {
        let now = tomare_model::now_ms();
        let mut tx = write_tx(&self.writer, false).await?;
        let rows = sqlx::query(
            "UPDATE messages SET state = 'released', updated_at = ? WHERE state = 'delivering' RETURNING id, org_id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<(String, i64)> = rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_>>()?;
        let events: Vec<Event> = ids
            .iter()
            .map(|(id, org)| Event {
                org_id: *org,
                message_id: id,
                kind: "released",
                actor: "recovery",
                detail: "interrupted by a restart".into(),
            })
            .collect();
        insert_events(&mut tx, now, &events).await?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    async fn live_ids(&self, unarchived: bool) -> Result<Vec<MessageId>> {
        let sql = if unarchived {
            "SELECT id FROM messages WHERE state NOT IN ('delivered', 'failed', 'cancelled', 'rejected') \
             OR archived < 2"
        } else {
            "SELECT id FROM messages WHERE state NOT IN ('delivered', 'failed', 'cancelled', 'rejected')"
        };
        let ids: Vec<String> = sqlx::query_scalar(sql).fetch_all(&self.reader).await?;
        ids.into_iter().map(parse_id).collect()
    }

    async fn list(&self, state: Option<State>, limit: i64) -> Result<Vec<MessageRow>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages {} ORDER BY id DESC LIMIT ?",
            if state.is_some() { "WHERE state = ?" } else { "" }
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(s) = state {
            q = q.bind(s.as_str());
        }
        let rows = q.bind(limit).fetch_all(&self.reader).await?;
        let mut out = rows.iter().map(message_from_row).collect::<Result<Vec<_>>>()?;
        self.attach_recipients(&mut out).await?;
        Ok(out)
    }

    async fn visible(&self, scope: &Scope, states: &[State], limit: i64) -> Result<Vec<MessageRow>> {
        let mut wheres = vec!["org_id = ?".to_string()];
        let org = match scope {
            Scope::Org(org) | Scope::Person { org, .. } | Scope::Own { org, .. } => *org,
        };
        if !states.is_empty() {
            wheres.push(format!("state IN ({})", vec!["?"; states.len()].join(", ")));
        }
        if let Scope::Person { senders, .. } = scope {
            let own = vec!["?"; senders.len() + 1].join(", ");
            wheres.push(format!(
                "(lower(mail_from) IN ({own}) OR lower(auth_user) = ? OR id IN (SELECT message_id FROM approval_asked WHERE email = ?))"
            ));
        }
        if let Scope::Own { .. } = scope {
            wheres.push("(lower(mail_from) = ? OR lower(auth_user) = ?)".into());
        }
        let sql =
            format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE {} ORDER BY id DESC LIMIT ?", wheres.join(" AND "));
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(org);
        for s in states {
            q = q.bind(s.as_str());
        }
        if let Scope::Person { email, senders, .. } = scope {
            let email = email.to_lowercase();
            q = q.bind(email.clone());
            for s in senders {
                q = q.bind(s.to_lowercase());
            }
            q = q.bind(email.clone()).bind(email);
        }
        if let Scope::Own { email, .. } = scope {
            let email = email.to_lowercase();
            q = q.bind(email.clone()).bind(email);
        }
        let rows = q.bind(limit).fetch_all(&self.reader).await?;
        let mut out = rows.iter().map(message_from_row).collect::<Result<Vec<_>>>()?;
        self.attach_recipients(&mut out).await?;
        Ok(out)
    }

    async fn stats(&self, org: OrgId, since: i64) -> Result<Stats> {
        const DAY: &str = "strftime('%Y-%m-%d', m.received_at / 1000, 'unixepoch')";
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DAY}, m.state, COUNT(*) FROM messages m WHERE m.org_id = ? AND m.received_at >= ? \
             AND m.is_dsn = 0 GROUP BY 1, 2 ORDER BY 1, 2"
        )))
        .bind(org)
        .bind(since)
        .fetch_all(&self.reader)
        .await?;
        let mut by_state = Vec::with_capacity(rows.len());
        for r in rows {
            let state: String = r.try_get(1)?;
            let state = State::parse(&state).ok_or_else(|| StoreError::Corrupt { id: "stats".into(), what: state })?;
            by_state.push((r.try_get(0)?, state, r.try_get(2)?));
        }
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DAY}, json_extract(r.value, '$.name'), COUNT(DISTINCT m.id) FROM messages m \
             JOIN facts f ON f.message_id = m.id, json_each(f.verdict, '$.rules') r \
             WHERE m.org_id = ? AND m.received_at >= ? AND json_valid(f.verdict) GROUP BY 1, 2 ORDER BY 1, 2"
        )))
        .bind(org)
        .bind(since)
        .fetch_all(&self.reader)
        .await?;
        let by_rule = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get::<Option<String>, _>(1)?.unwrap_or_default(), r.try_get(2)?)))
            .collect::<Result<Vec<_>>>()?;
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT e.message_id) FROM events e JOIN messages m ON m.id = e.message_id \
             WHERE e.kind = 'held' AND m.org_id = ? AND m.received_at >= ?",
        )
        .bind(org)
        .bind(since)
        .fetch_one(&self.reader)
        .await?;
        let rows = sqlx::query(
            "SELECT m.mail_from, e.actor, e.at - m.received_at FROM events e JOIN messages m ON m.id = e.message_id \
             WHERE e.kind = 'cancelled' AND m.org_id = ? AND m.received_at >= ? \
             AND EXISTS (SELECT 1 FROM events h WHERE h.message_id = m.id AND h.kind = 'held')",
        )
        .bind(org)
        .bind(since)
        .fetch_all(&self.reader)
        .await?;
        let cancels =
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect::<Result<Vec<_>>>()?;
        Ok(Stats { by_state, by_rule, held, cancels })
    }

    async fn decided_by(&self, org: OrgId, email: &str, limit: i64) -> Result<Vec<MessageId>> {
        let e = email.to_lowercase();
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT message_id FROM approvals WHERE org_id = ?1 AND decision IS NOT NULL AND \
             (lower(decided_by) IN ('web:' || ?2, 'link:' || ?2, 'api:' || ?2) \
              OR substr(lower(decided_by), 1, length(?2) + 6) IN ('web:' || ?2 || ' (', 'api:' || ?2 || ' (')) \
             ORDER BY decided_at DESC LIMIT ?3",
        )
        .bind(org)
        .bind(&e)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        ids.into_iter().map(parse_id).collect()
    }

    async fn asked(&self, id: &MessageId) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT email FROM approval_asked WHERE message_id = ? ORDER BY email")
            .bind(id.as_str())
            .fetch_all(&self.reader)
            .await?)
    }

    async fn get(&self, id: &MessageId) -> Result<Option<(MessageRow, Vec<EventRow>)>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?");
        let Some(row) = sqlx::query(AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(&self.reader).await? else {
            return Ok(None);
        };
        let mut message = [message_from_row(&row)?];
        self.attach_recipients(&mut message).await?;
        let events = sqlx::query("SELECT at, kind, actor, detail FROM events WHERE message_id = ? ORDER BY id")
            .bind(id.as_str())
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|r| {
                Ok(EventRow { at: r.try_get(0)?, kind: r.try_get(1)?, actor: r.try_get(2)?, detail: r.try_get(3)? })
            })
            .collect::<Result<Vec<_>>>()?;
        let [message] = message;
        Ok(Some((message, events)))
    }

    async fn depth(&self) -> Result<Vec<(State, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM messages GROUP BY state").fetch_all(&self.reader).await?;
        let mut out: Vec<(State, i64)> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for r in rows {
            let s: String = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            if let Some(slot) = out.iter_mut().find(|(st, _)| st.as_str() == s) {
                slot.1 = n;
            }
        }
        Ok(out)
    }
}

fn used_link_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<UsedLink> {
    let id: String = r.try_get(1)?;
    let action: String = r.try_get(2)?;
    let outcome: String = r.try_get(4)?;
    let corrupt = |what: String| StoreError::Corrupt { id: id.clone(), what };
    let outcome = match outcome.as_str() {
        "done" => Transition::Done,
        "not_found" => Transition::NotFound,
        other => match other.strip_prefix("refused:").and_then(State::parse) {
            Some(state) => Transition::Refused(state),
            None => return Err(corrupt(format!("link outcome {other:?}"))),
        },
    };
    Ok(UsedLink {
        nonce: r.try_get(0)?,
        action: tomare_model::LinkAction::parse(&action).ok_or_else(|| corrupt(format!("link action {action:?}")))?,
        message_id: parse_id(id.clone())?,
        person: r.try_get(3)?,
        outcome,
        used_at: r.try_get(5)?,
    })
}
