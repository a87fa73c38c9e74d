//! Every user-facing string (SMTP replies aside), in English and Japanese.
//! Keys are stable identifiers; `{}` placeholders are filled in order.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    /// `ja` or `en` (a person's chosen language), else None.
    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// Japanese when `TOMARE_LANG`, `LC_ALL`, `LC_MESSAGES` or `LANG` (the
    /// first one set) starts with `ja`; English otherwise.
    pub fn from_env() -> Lang {
        let value = ["TOMARE_LANG", "LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .unwrap_or_default();
        if value.to_ascii_lowercase().starts_with("ja") { Lang::Ja } else { Lang::En }
    }
}

const TABLE: &[(&str, &str, &str)] = &[
    ("archive.bad_query", "Query not understood {}", "検索式を解釈できません（{}）"),
    ("archive.no_results", "No archived messages match.", "一致するアーカイブ済みメッセージはありません。"),
    (
        "archive.nothing_to_export",
        "Nothing to export: give message ids or --query.",
        "書き出す対象がありません。ID か --query を指定してください。",
    ),
    ("archive.exported", "Exported {} messages to {}.", "{} 件のメッセージを {} に書き出しました。"),
    (
        "archive.intact",
        "The archive is intact: {} records, {} signed checkpoints.",
        "アーカイブは改ざんされていません（レコード {} 件、署名付きチェックポイント {} 件）。",
    ),
    ("archive.broken", "The archive does NOT verify: record {}: {}", "アーカイブの検証に失敗しました: レコード {}: {}"),
    ("archive.progress", "{} messages...", "{} 件処理中..."),
    ("archive.reindexed", "Indexed {} messages.", "{} 件のメッセージを索引に登録しました。"),
    ("archive.no_such_path", "{} does not exist.", "{} は存在しません。"),
    (
        "archive.imported",
        "Imported {} messages ({} already in the archive, {} unreadable); {} recipient domains added to the history.",
        "{} 件のメッセージを取り込みました（既存 {} 件、読めないもの {} 件）。宛先履歴に {} ドメインを追加しました。",
    ),
    ("archive.held", "{} messages are now under legal hold.", "{} 件のメッセージをリーガルホールドにしました。"),
    (
        "archive.hold_released",
        "Legal hold lifted from {} messages.",
        "{} 件のメッセージのリーガルホールドを解除しました。",
    ),
    (
        "archive.retention_off",
        "Retention is off ([archive] retention_days = 0): nothing removed.",
        "保存期間が無期限（[archive] retention_days = 0）のため、削除はありません。",
    ),
    (
        "archive.retention_done",
        "Removed {} messages older than {} days.",
        "{1} 日より古いメッセージ {0} 件を削除しました。",
    ),
    (
        "replay.summary",
        "{} messages replayed; {} would be treated differently.",
        "{} 件を再評価しました。扱いが変わるのは {} 件です。",
    ),
    ("serve.running", "tomare {} is running.", "tomare {} が起動しました。"),
    ("serve.smtp", "  SMTP: {} (relaying for {}; senders in {})", "  SMTP: {}（中継を許可: {}、送信者ドメイン: {}）"),
    ("serve.smtp_tls", "  STARTTLS and AUTH: on", "  STARTTLS と AUTH: 有効"),
    ("serve.web", "  Web:  http://{} (/healthz, /metrics)", "  Web:  http://{}（/healthz、/metrics）"),
    ("serve.data", "  Data: {}", "  データ: {}"),
    (
        "serve.delivery_sandbox",
        "  Delivery: sandbox, nothing leaves this machine (captured in {})",
        "  配送: sandbox（外部には送信せず {} に保存）",
    ),
    ("serve.delivery_relay", "  Delivery: relay via {}:{}", "  配送: リレー {}:{} 経由"),
    ("serve.delivery_mx", "  Delivery: direct to each domain's MX", "  配送: 宛先ドメインの MX へ直接"),
    ("serve.hold", "  Hold: {} for mail to outside, {} for internal-only mail", "  保留: 社外宛て {}、社内のみ {}"),
    (
        "serve.protect",
        "  Attachments to outside: {} ([protect] external_attachments; rules may ask too)",
        "  社外宛ての添付ファイル保護: {}（[protect] external_attachments。ルールでも指定できます）",
    ),
    (
        "serve.dkim",
        "  DKIM: signing what tomare changes for {}",
        "  DKIM: tomare が変更したメールを {} として署名します",
    ),
    (
        "serve.no_dkim",
        "  DKIM: no [dkim] key (changed mail goes out unsigned)",
        "  DKIM: [dkim] の鍵がありません（変更したメールは署名なしで送られます）",
    ),
    ("serve.first_message", "Send a first test message:", "最初のテストメールを送るには:"),
    ("serve.see_it", "Then see it:", "送ったメールを見るには:"),
    (
        "serve.stopping",
        "Shutting down: finishing open sessions and deliveries...",
        "終了しています: 処理中のセッションと配送を完了させています...",
    ),
    ("serve.stopped", "Stopped.", "終了しました。"),
    (
        "serve.recovered",
        "Resumed {} message(s) interrupted by the last stop.",
        "前回の停止で中断された {} 通の処理を再開します。",
    ),
    ("queue.empty", "No messages.", "メッセージはありません。"),
    ("queue.not_found", "No message with id {}.", "ID {} のメッセージはありません。"),
    (
        "queue.bad_id",
        "{} is not a queue id (26 letters and digits).",
        "{} はキュー ID ではありません（英数字 26 文字）。",
    ),
    ("queue.released", "Released {}: it will be delivered now.", "{} を解放しました。すぐに配送されます。"),
    ("queue.cancelled", "Cancelled {}: it will not be delivered.", "{} を取り消しました。配送されません。"),
    ("queue.refused", "{} is {}: that is not possible now.", "{} は {} の状態のため、この操作はできません。"),
    ("queue.facts", "Inspection:", "検査結果:"),
    ("queue.incomplete", "incomplete", "未完了"),
    ("queue.approved", "Approved {}: it will be delivered now.", "{} を承認しました。すぐに配送されます。"),
    ("queue.denied", "Refused {}: the sender is told.", "{} を却下しました。送信者に通知します。"),
    ("queue.rewritten_copy", "As the rules rewrote it (to be delivered): {}", "ルールで書き換えた配送用のメール: {}"),
    ("queue.sandbox_copy", "Sandbox copy: {}", "sandbox のコピー: {}"),
    ("config.ok", "{}: OK", "{}: 問題ありません"),
    ("config.error", "{}: line {}: {}", "{}: {} 行目: {}"),
    ("config.read_error", "cannot read {}: {}", "{} を読めません: {}"),
    (
        "serve.tightened_dir",
        "The data directory {} could be read by other users (mode {}): now only by tomare's user (0700).",
        "データディレクトリ {} は他のユーザーからも読める状態でした（モード {}）。tomare のユーザーだけが読めるように変更しました（0700）。",
    ),
    (
        "serve.tightened_files",
        "{} files and directories in {} could be read by other users: now only by tomare's user.",
        "{1} の中の {0} 個のファイル・ディレクトリが他のユーザーからも読める状態でした。tomare のユーザーだけが読めるように変更しました。",
    ),
    (
        "cli.migrations_pending",
        "The database has {} schema migration(s) pending: run `tomare db migrate` (or start `tomare serve`) first.",
        "データベースに未適用のスキーマ移行が {} 件あります。先に `tomare db migrate` を実行してください（`tomare serve` の起動でも適用されます）。",
    ),
    ("db.pending", "pending", "未適用"),
    ("db.applied", "applied {}", "適用済み {}"),
    ("db.adopted", "present before migrations were recorded (noted {})", "記録開始前から適用済み（{} に記録）"),
    ("db.summary", "{} applied, {} pending.", "適用済み {} 件、未適用 {} 件。"),
    ("db.up_to_date", "The databases are up to date.", "データベースは最新です。"),
    ("db.migrated", "{}: applied migration {} {}.", "{}: マイグレーション {} {} を適用しました。"),
    (
        "cli.no_data_dir",
        "No tomare data directory at {}. Point at yours with --config FILE (or TOMARE_CONFIG=FILE); `tomare serve` creates it.",
        "{} に tomare のデータディレクトリがありません。--config FILE（または TOMARE_CONFIG=FILE）で指定してください。`tomare serve` を起動すると作成されます。",
    ),
    (
        "review.admins_asked",
        "the approver ({}) is not in the directory: the organisation's admins are asked",
        "承認者（{}）がディレクトリにいないため、組織の管理者に承認を依頼します",
    ),
    (
        "review.nobody_to_ask",
        "the approver ({}) is not in the directory and [org] admins is empty: it waits until an admin decides (tomare queue approve / deny)",
        "承認者（{}）がディレクトリにおらず、[org] admins も空のため、管理者が判断するまで待機します（tomare queue approve / deny）",
    ),
    ("user.saved", "Password set for {}.", "{} のパスワードを設定しました。"),
    ("user.bad_address", "{} is not a valid address.", "{} は正しいアドレスではありません。"),
    ("user.send_as", "{} may also send as: {}.", "{} は次のアドレスでも送信できます: {}。"),
    ("user.outside_org", "{} is not in the organisation's domains ({}).", "{} は組織のドメイン（{}）に含まれません。"),
    ("user.password_prompt", "Password (read from standard input):", "パスワード（標準入力から読み込みます）:"),
    ("user.empty_password", "The password must not be empty.", "パスワードを空にはできません。"),
    ("user.none", "No users.", "ユーザーはいません。"),
    (
        "user.bad_role",
        "{} is not a role: sender, approver or admin.",
        "{} は権限ではありません（sender, approver, admin のいずれか）。",
    ),
    (
        "user.config_wins",
        "Note: {} is also a [[user]] of the config file, whose role and supervisor take precedence.",
        "注意: {} は設定ファイルの [[user]] にもあり、そちらの権限と上長が優先されます。",
    ),
    (
        "user.sessions_ended",
        "Signed out: {} web session(s) and API token(s) ended.",
        "ログアウトしました: Web のセッションと API トークン {} 件を無効にしました。",
    ),
    ("user.tokens_revoked", "{} API token(s) of {} removed.", "{1} の API トークン {0} 件を削除しました。"),
    ("user.yes", "yes", "可"),
    ("user.no", "no", "不可"),
    (
        "user.no_account",
        "{} has no account yet: set a password with `tomare user passwd` first.",
        "{} にはアカウントがありません。先に `tomare user passwd` でパスワードを設定してください。",
    ),
    (
        "user.token",
        "API token for {} (shown only now; send it as Authorization: Bearer TOKEN):",
        "{} の API トークン（表示は今回のみ。Authorization: Bearer TOKEN として送信します）:",
    ),
    (
        "user.directory_reloaded",
        "The running server (pid {}) now uses it.",
        "起動中のサーバー（pid {}）に反映しました。",
    ),
    ("user.imported", "Directory replaced: {} people.", "ディレクトリを更新しました: {} 人。"),
    (
        "rules.no_server",
        "No running server found (no pid in {}).",
        "起動中のサーバーが見つかりません（{} に PID がありません）。",
    ),
    (
        "rules.reloaded",
        "{} rules checked; server {} told to reload them.",
        "ルール {} 件を確認し、サーバー（PID {}）に再読み込みを指示しました。",
    ),
    ("serve.rules_reloaded", "Rules reloaded: {} rules.", "ルールを再読み込みしました: {} 件。"),
    (
        "serve.rules_refused",
        "New rules refused, the previous ones stay: {}",
        "新しいルールに誤りがあるため、以前のルールを使い続けます: {}",
    ),
    ("place.subject", "the subject", "件名"),
    ("place.body", "the body", "本文"),
    ("ev.external_recipients", "{} recipient(s) outside the company", "社外の宛先 {} 件"),
    ("ev.visible_external", "{} outside addresses visible in To/Cc", "To/Cc に見える社外アドレス {} 件"),
    ("ev.external_domains", "{} outside domains: {}", "社外ドメイン {} 件: {}"),
    ("ev.recipient_domain", "recipient domain {}", "宛先ドメイン {}"),
    ("ev.sender", "sender {}", "送信者 {}"),
    ("ev.sender_group", "sender in group {}", "送信者のグループ {}"),
    ("ev.text", "\"{}\" in {}", "{1} に「{0}」"),
    ("ev.detection", "{} in {}", "{1} に {0}"),
    ("ev.attachment", "{} attachment(s): {}", "添付ファイル {} 件: {}"),
    ("ev.attachment_count", "{} attachment(s)", "添付ファイル {} 件"),
    ("ev.incomplete", "not fully read: {}", "読み取れなかった部分: {}"),
    ("ev.malformed", "malformed: {}", "不正な形式: {}"),
    ("ev.body_addresses", "{} addresses in the body", "本文中のアドレス {} 件"),
    ("ev.first_contact", "first message to {}", "{} へは初めての送信"),
    ("ev.lookalike", "{} looks like {}", "{} は {} に似ています"),
    ("ev.size", "{} bytes", "{} バイト"),
    ("ev.time", "sent at {}", "送信時刻 {}"),
    (
        "rule.visible-recipients",
        "Many outside addresses are visible to every recipient in To/Cc: they are moved to Bcc.",
        "To/Cc に社外のアドレスが多数あり、全員に見えてしまうため Bcc に移します。",
    ),
    (
        "rule.malformed-recipient-headers",
        "An address header is malformed, which can leak addresses.",
        "宛先ヘッダーの形式が不正で、アドレスが漏れるおそれがあります。",
    ),
    ("rule.addresses-in-body", "The body lists many email addresses.", "本文に多数のメールアドレスが含まれています。"),
    (
        "rule.confidential-to-outside",
        "Marked confidential or internal-only, and going outside: a supervisor must approve it.",
        "社外秘・社内限りの表示があり、社外に送られます。上長の承認が必要です。",
    ),
    (
        "rule.personal-data-to-outside",
        "An attachment carries personal data and is going outside: a supervisor must approve it.",
        "添付ファイルに個人情報（マイナンバー・カード番号・口座番号）が含まれ、社外に送られます。上長の承認が必要です。",
    ),
    (
        "rule.unprotected-confidential-attachment",
        "An attachment with confidential content is not protected.",
        "機密情報を含む添付ファイルが保護されていません。",
    ),
    (
        "rule.inspection-incomplete",
        "Part of the message could not be read: a person must approve it before it leaves.",
        "メールの一部を読み取れなかったため、送信前に担当者の承認が必要です。",
    ),
    (
        "rule.lookalike-domain",
        "A recipient domain looks like one of ours or one we write to, but is not it.",
        "宛先ドメインが自社や取引先のドメインに似ていますが、別のドメインです。",
    ),
    (
        "rule.first-contact-with-attachments",
        "First message ever to this recipient domain, and it carries attachments.",
        "初めて送信するドメインへの添付ファイル付きメールです。",
    ),
    (
        "rule.external-hold",
        "Mail to outside the company waits a moment, so that it can still be cancelled.",
        "社外宛てのメールは、取り消せるよう少しの間保留します。",
    ),
    ("rule.internal-only", "Mail only inside the company.", "社内のみのメールです。"),
    ("check.verdict", "Verdict", "判定"),
    (
        "check.bad_address",
        "{} is not an envelope address ({}): give --from / --to.",
        "{} はエンベロープのアドレスとして使えません（{}）。--from / --to で指定してください。",
    ),
    ("check.hold", "Hold", "保留"),
    ("check.approver", "Approver", "承認者"),
    (
        "check.no_supervisor",
        "the organisation's admins ([org] admins; the sender has no supervisor in the directory)",
        "組織の管理者（[org] admins。送信者の上長はディレクトリに登録がありません）",
    ),
    ("check.reject", "Rejected", "拒否"),
    ("check.transforms", "Rewrites", "書き換え"),
    ("outcome.deliver", "deliver", "配送"),
    ("outcome.hold", "hold", "保留"),
    ("outcome.approval", "needs approval", "承認待ち"),
    ("outcome.reject", "reject", "拒否"),
    ("inspect.subject", "Subject", "件名"),
    ("inspect.malformed", "Malformed header", "不正なヘッダー"),
    ("inspect.body", "Body", "本文"),
    ("inspect.encrypted", "password-protected", "パスワード保護"),
    ("inspect.mismatch", "name and content disagree", "ファイル名と中身の形式が不一致"),
    ("inspect.no_detections", "Detections: none", "検出: なし"),
    ("inspect.complete", "Inspection complete.", "検査は完了しました。"),
    ("inspect.incomplete", "Inspection incomplete:", "検査は完了していません:"),
    ("state.received", "received, being inspected", "受信済み（検査中）"),
    ("state.held", "held", "保留中"),
    ("state.awaiting_approval", "waiting for approval", "承認待ち"),
    ("state.released", "released, about to be sent", "送信待ち"),
    ("state.delivering", "being sent", "送信中"),
    ("state.deferred", "waiting to be retried", "再送待ち"),
    ("state.delivered", "sent", "送信済み"),
    ("state.failed", "failed", "送信失敗"),
    ("state.cancelled", "cancelled", "取り消し済み"),
    ("state.rejected", "not sent (rejected)", "送信されませんでした（拒否）"),
    ("link.action.cancel", "Cancel this message", "このメールの送信を取り消す"),
    ("link.action.release", "Send this message now", "このメールを今すぐ送信する"),
    ("link.action.approve", "Approve this message", "このメールの送信を承認する"),
    ("link.action.deny", "Refuse this message", "このメールの送信を却下する"),
    ("link.ask.cancel", "The message below will not be sent.", "下記のメールは送信されなくなります。"),
    (
        "link.ask.release",
        "The message below goes out now, without waiting for the hold to end.",
        "下記のメールを保留時間の終了を待たずに今すぐ送信します。",
    ),
    ("link.ask.approve", "The message below will be sent.", "下記のメールが送信されます。"),
    (
        "link.ask.deny",
        "The message below will not be sent; the sender is told why.",
        "下記のメールは送信されず、送信者に理由が伝えられます。",
    ),
    ("link.reason", "Reason (the sender sees it)", "理由（送信者に伝えられます）"),
    ("link.subject", "Subject", "件名"),
    ("link.from", "Sender", "送信者"),
    ("link.to", "Recipients", "宛先"),
    ("link.state", "Now", "現在の状態"),
    ("link.invalid.title", "This link is not valid", "このリンクは無効です"),
    (
        "link.invalid",
        "The link is incomplete or was changed. Open it again from the notice mail, unchanged.",
        "リンクが不完全か、変更されています。通知メールのリンクをそのまま開き直してください。",
    ),
    ("link.expired.title", "This link has expired", "このリンクは有効期限切れです"),
    (
        "link.expired",
        "The hold or the approval this link was for is over; nothing was changed.",
        "このリンクの対象だった保留・承認の期間は終了しています。何も変更されていません。",
    ),
    ("link.not_found", "The message is no longer in the queue.", "このメールはキューにありません。"),
    (
        "link.too_late",
        "This can no longer be done: the message is {} now.",
        "この操作はもうできません。メールは現在「{}」です。",
    ),
    ("link.used.done", "Already done: \u{201c}{}\u{201d} at {}.", "実行済みです: 「{}」（{}）"),
    (
        "link.used.refused",
        "This link was used at {}; by then the message was {}, so nothing was changed.",
        "このリンクは {} に使用済みです。その時点でメールは「{}」だったため、何も変更されませんでした。",
    ),
    (
        "link.error",
        "Something went wrong on the server; nothing was changed. Try again in a moment.",
        "サーバー側で問題が起きたため、何も変更されていません。しばらくしてからもう一度お試しください。",
    ),
    ("notice.held.title", "Held", "保留中"),
    (
        "notice.held.lead",
        "This message is held before sending; it goes out when the hold ends. Cancel it below if it is a mistake.",
        "次のメールは送信前に保留されています。保留時間が過ぎると送信されます。誤りであれば下のリンクから取り消してください。",
    ),
    ("notice.awaiting.title", "Awaiting approval", "承認待ち"),
    (
        "notice.awaiting.lead",
        "This message waits for approval; it goes out once approved.",
        "次のメールは承認待ちです。承認されると送信されます。",
    ),
    ("notice.request.title", "Approval requested", "承認のお願い"),
    ("notice.request.lead", "Please approve or refuse this message.", "次のメールの送信承認をお願いします。"),
    ("notice.reminder.title", "Reminder: approval requested", "【再通知】承認のお願い"),
    (
        "notice.reminder.lead",
        "Half the time to decide is gone: please approve or refuse this message.",
        "承認期限までの時間が半分を過ぎました。次のメールの承認・却下をお願いします。",
    ),
    ("notice.denied.title", "Not sent", "送信されませんでした"),
    (
        "notice.denied.lead",
        "Your message was not sent: it was not approved.",
        "承認者が送信を許可しなかったため、次のメールは送信されませんでした。",
    ),
    ("notice.rejected.title", "Not sent", "送信されませんでした"),
    (
        "notice.rejected.lead",
        "Your message was not sent: a company rule stopped it.",
        "社内の送信ルールにより、次のメールは送信されませんでした。",
    ),
    ("notice.approved.title", "Approved", "承認されました"),
    (
        "notice.approved.lead",
        "Your message was approved by {} at {}; it goes out now.",
        "次のメールは {} により承認されました（{}）。これから送信されます。",
    ),
    ("notice.cancelled.title", "Cancelled", "取り消されました"),
    (
        "notice.cancelled.lead",
        "Your message was cancelled by {} at {}; it will not be sent.",
        "次のメールは {} により取り消されました（{}）。送信されません。",
    ),
    ("notice.released.title", "Sent early", "保留を解除して送信"),
    (
        "notice.released.lead",
        "Your message was sent before its hold ended, by {} at {}.",
        "次のメールは保留時間の終了前に {} により送信されました（{}）。",
    ),
    ("notice.sender", "Sender", "送信者"),
    ("notice.subject", "Subject", "件名"),
    ("notice.recipients", "Recipients", "宛先"),
    ("notice.external", "external", "社外"),
    ("notice.attachments", "Attachments", "添付ファイル"),
    ("notice.until.held", "Goes out at", "送信予定"),
    ("notice.until.deadline", "Decide by", "承認期限"),
    ("notice.reason", "Reason", "理由"),
    ("notice.hits", "Found in the message", "検出された内容"),
    ("notice.changes", "tomare will change", "送信時の変更"),
    (
        "notice.change.bcc",
        "To and Cc are moved to Bcc (recipients do not see each other)",
        "To/Cc を Bcc に移します（受信者同士にアドレスが見えません）",
    ),
    ("notice.change.add", "{} is added in Bcc", "{} を Bcc に追加します"),
    ("notice.change.header", "Header added: {}", "ヘッダーを追加します: {}"),
    ("notice.link.cancel", "Cancel", "送信を取り消す"),
    ("notice.link.release", "Send now", "今すぐ送信する"),
    ("notice.link.approve", "Approve", "承認する"),
    ("notice.link.deny", "Deny", "却下する"),
    ("ui.title", "tomare", "tomare"),
    ("invite.subject", "Set your password for {}'s mail gateway", "{} のメールゲートウェイのパスワード設定"),
    (
        "invite.lead",
        "An account was made for {} on tomare, the mail gateway that holds outgoing mail before it leaves. Set your password here:",
        "送信メールを送信前に保留するメールゲートウェイ tomare に、{} のアカウントが用意されました。次のリンクからパスワードを設定してください:",
    ),
    ("invite.expires", "The link works once, until {}.", "このリンクは {} まで、1回だけ使えます。"),
    ("invite.title", "Set your password", "パスワードの設定"),
    ("invite.sent", "An invitation was sent to {}.", "{} に招待メールを送りました。"),
    ("invite.unknown", "{} is not in the directory.", "{} はディレクトリにいません。"),
    ("invite.has_password", "{} can sign in already.", "{} はすでにログインできます。"),
    (
        "invite.expired",
        "This invitation has expired; ask for a new one.",
        "この招待は有効期限切れです。新しい招待を依頼してください。",
    ),
    ("invite.used", "This invitation was used already.", "この招待はすでに使用されています。"),
    (
        "invite.done",
        "The password for {} is set: sign in at /login.",
        "{} のパスワードを設定しました。/login からログインしてください。",
    ),
    ("ui.users.invite", "Invite", "招待"),
    (
        "serve.first_admin",
        "First start: the admin account {} was made with the one-time password {} — sign in at {} and change it on the Account page.",
        "初回起動: 管理者アカウント {} をワンタイムパスワード {} で作成しました。{} でログインし、アカウントのページで変更してください。",
    ),
    ("ui.nav.tray", "Held mail", "保留中のメール"),
    ("ui.nav.history", "Sent mail", "送信履歴"),
    ("ui.nav.approvals", "Approvals", "承認"),
    ("ui.nav.queue", "Queue", "キュー"),
    ("ui.nav.dashboard", "Dashboard", "ダッシュボード"),
    ("ui.nav.sandbox", "Sandbox", "サンドボックス"),
    ("ui.nav.rules", "Rules", "ルール"),
    ("ui.nav.users", "People", "ユーザー"),
    ("ui.users.title", "People and accounts", "ユーザーとアカウント"),
    ("ui.users.role", "Role", "権限"),
    ("ui.users.supervisor", "Supervisor", "上長"),
    ("ui.users.source", "From", "登録元"),
    ("ui.users.sign_in", "Can sign in", "ログイン"),
    ("ui.users.import", "Import the directory (CSV)", "ディレクトリの取り込み（CSV）"),
    (
        "ui.users.import_help",
        "A header row naming email, name, role, supervisor, groups (groups separated by \";\"). It replaces the imported people; people set with `tomare user add` stay.",
        "1行目に email, name, role, supervisor, groups の列名（groups は \";\" 区切り）。取り込み済みの人を置き換えます。`tomare user add` で登録した人はそのままです。",
    ),
    ("ui.users.import_button", "Import", "取り込む"),
    ("ui.audit.csv", "Download as CSV", "CSV でダウンロード"),
    ("ui.rules.title", "Rules", "ルール"),
    ("ui.rules.in_effect", "In effect now", "現在有効なルール"),
    ("ui.rules.source", "From", "定義元"),
    ("ui.rules.description", "What it does", "説明"),
    ("ui.rules.edit", "The rules file", "ルールファイル"),
    ("ui.rules.message", "Message id for a dry run", "試験適用するメールの ID"),
    ("ui.rules.check", "Check", "検証"),
    ("ui.rules.dry_run", "Dry run", "試験適用"),
    ("ui.rules.save", "Save and reload", "保存して反映"),
    ("ui.rules.before", "Rules now", "現在のルール"),
    ("ui.rules.after", "Edited rules", "編集後のルール"),
    ("ui.rules.ok", "The rules are valid.", "ルールは有効です。"),
    ("ui.rules.saved", "Saved; the server now runs {} rules.", "保存しました。現在 {} 件のルールが有効です。"),
    (
        "ui.rules.saved_no_reload",
        "Saved; reload the server to use them.",
        "保存しました。反映するにはサーバーで再読み込みしてください。",
    ),
    (
        "ui.rules.reload_failed",
        "Saved, but the server kept its old rules: {}",
        "保存しましたが、サーバーは以前のルールのままです: {}",
    ),
    ("ui.rules.write_failed", "Could not write {}: {}", "{} に書き込めませんでした: {}"),
    ("ui.sandbox.title", "Captured mail (sandbox)", "受信したメール（サンドボックス）"),
    ("ui.sandbox.one", "Captured mail", "受信したメール"),
    (
        "ui.sandbox.lead",
        "Delivery goes to the sandbox: nothing leaves this machine. Here is what would have been delivered, and tomare's own notices with their links.",
        "配送先はサンドボックスです。メールはこのマシンから外に出ません。配送されるはずだったメールと、tomare の通知（リンク付き）がここに表示されます。",
    ),
    ("ui.sandbox.empty", "Nothing captured yet.", "まだ何も届いていません。"),
    ("ui.sandbox.off", "Delivery does not go to the sandbox.", "配送先はサンドボックスではありません。"),
    ("ui.sandbox.notice", "tomare notice", "tomare の通知"),
    ("ui.sandbox.to", "To", "宛先"),
    ("ui.sandbox.from", "From", "差出人"),
    ("ui.dashboard.title", "Dashboard", "ダッシュボード"),
    ("ui.dashboard.days", "Days", "日数"),
    ("ui.dashboard.show", "Show", "表示"),
    ("ui.dashboard.csv", "Download as CSV", "CSV でダウンロード"),
    ("ui.dashboard.held", "mails held", "保留されたメール"),
    ("ui.dashboard.cancelled", "cancelled by their senders", "送信者自身が取り消し"),
    ("ui.dashboard.median", "median time from sending to the sender's cancel", "送信から取り消しまでの時間（中央値）"),
    ("ui.dashboard.others", "held mails cancelled by others", "他の人が取り消した保留メール"),
    ("ui.dashboard.by_state", "Messages by day and state now", "日別・現在の状態別のメール数"),
    ("ui.dashboard.by_rule", "Messages by rule", "ルール別のメール数"),
    ("ui.dashboard.day", "Day (UTC)", "日付（UTC）"),
    ("ui.dashboard.rule", "Rule", "ルール"),
    ("ui.dashboard.total", "Total", "合計"),
    ("ui.dashboard.empty", "No mail in this period.", "この期間のメールはありません。"),
    ("ui.dashboard.no_rules", "No rule fired in this period.", "この期間に該当したルールはありません。"),
    (
        "ui.dashboard.note",
        "By the day mail was received (UTC). A mail its sender cancelled while held is a mistake the hold caught.",
        "受信日（UTC）ごとの集計です。保留中に送信者自身が取り消したメールは、保留によって防げた誤送信です。",
    ),
    ("ui.nav.audit", "Audit log", "監査ログ"),
    ("ui.nav.account", "Account", "アカウント"),
    ("ui.nav.logout", "Sign out", "ログアウト"),
    ("ui.login.title", "Sign in to tomare", "tomare にログイン"),
    ("ui.login.email", "Email address", "メールアドレス"),
    ("ui.login.password", "Password", "パスワード"),
    ("ui.login.submit", "Sign in", "ログイン"),
    ("ui.login.wrong", "The address or the password is wrong.", "メールアドレスまたはパスワードが違います。"),
    (
        "ui.login.locked",
        "Too many failed sign-ins. Try again in {} minute(s).",
        "ログインの失敗が多すぎます。{} 分後にもう一度お試しください。",
    ),
    ("ui.forbidden", "This is not yours to see or do.", "この操作・表示の権限がありません。"),
    (
        "ui.csrf",
        "The form was out of date or came from another site; nothing was changed. Reload the page and try again.",
        "フォームが古いか、別のサイトから送信されたため、何も変更していません。ページを再読み込みしてやり直してください。",
    ),
    (
        "ui.bad_request",
        "The request was not understood; nothing was changed.",
        "リクエストを解釈できなかったため、何も変更していません。",
    ),
    (
        "ui.too_late",
        "Some of it could no longer be done: the message had already moved on.",
        "一部の操作はできませんでした。メールはすでに次の段階に進んでいます。",
    ),
    ("ui.tray.title", "Held mail", "保留中のメール"),
    (
        "ui.tray.empty",
        "Nothing of yours is held. Mail you send waits here for a while before it goes out.",
        "保留中のメールはありません。送信したメールは、送信前にしばらくここで待機します。",
    ),
    ("ui.history.title", "Sent mail", "送信履歴"),
    ("ui.history.empty", "No mail of yours has gone through tomare yet.", "まだ tomare を通ったメールはありません。"),
    ("ui.approvals.title", "Waiting for your approval", "承認待ちのメール"),
    ("ui.approvals.empty", "Nothing waits for your decision.", "承認待ちのメールはありません。"),
    ("ui.approvals.decided", "Your decisions", "あなたの判断の履歴"),
    ("ui.queue.title", "Queue", "キュー"),
    ("ui.queue.all", "All", "すべて"),
    ("ui.queue.empty", "No messages in this state.", "この状態のメールはありません。"),
    ("ui.audit.title", "Audit log", "監査ログ"),
    ("ui.audit.empty", "Nothing recorded yet.", "記録はまだありません。"),
    ("ui.audit.when", "When", "日時"),
    ("ui.audit.who", "Who", "誰が"),
    ("ui.audit.what", "What", "操作"),
    ("ui.audit.target", "On", "対象"),
    ("ui.audit.from", "From", "接続元"),
    ("ui.search", "Search", "検索"),
    ("ui.nav.search", "Search", "検索"),
    ("ui.search.title", "Search the archive", "アーカイブの検索"),
    ("ui.search.hint", "e.g. 見積 from:taro has:attachment", "例: 見積 from:taro has:attachment"),
    ("ui.search.count", "Found:", "検索結果:"),
    ("ui.search.none", "Nothing matches.", "該当するメールはありません。"),
    ("ui.search.mbox", "Download all as mbox", "すべて mbox でダウンロード"),
    ("ui.search.bad", "The query cannot be read: {}", "検索条件を解釈できません: {}"),
    ("ui.search.unavailable", "The archive is off or not answering.", "アーカイブが無効か、応答していません。"),
    ("ui.download", "Download (.eml)", "ダウンロード（.eml）"),
    (
        "ui.body_html",
        "As the recipient sees it (scripts and remote images blocked)",
        "受信者に表示される内容（スクリプトと外部画像は無効）",
    ),
    ("ui.message.title", "Message", "メール"),
    ("ui.no_subject", "(no subject)", "（件名なし）"),
    ("ui.until", "sends", "送信まで"),
    ("ui.external", "external", "社外"),
    ("ui.attachment", "file", "添付"),
    ("ui.encrypted", "password-protected", "パスワード保護"),
    ("ui.incomplete", "not fully inspected", "検査未完了"),
    ("ui.pick", "Select", "選択"),
    ("ui.comment", "Comment (the sender sees it)", "コメント（送信者に伝えられます）"),
    ("ui.do.cancel", "Cancel", "送信取り消し"),
    ("ui.do.release", "Send now", "今すぐ送信"),
    ("ui.do.approve", "Approve", "承認"),
    ("ui.do.deny", "Deny", "却下"),
    ("ui.bulk.ticked", "Ticked:", "選択したメールを:"),
    ("ui.bulk.cancel", "Cancel all ticked", "まとめて取り消し"),
    ("ui.bulk.release", "Send all ticked now", "まとめて今すぐ送信"),
    ("ui.header_from", "From (header)", "差出人（ヘッダー）"),
    ("ui.envelope_from", "Envelope sender", "エンベロープ送信者"),
    ("ui.size", "Size", "サイズ"),
    ("ui.client", "Sent from", "送信元"),
    ("ui.auth_user", "Signed in as", "認証ユーザー"),
    ("ui.asked", "Asked to decide", "承認者"),
    ("ui.body", "Text", "本文"),
    ("ui.events", "What happened", "経過"),
    ("ui.save", "Save", "保存"),
    ("ui.account.title", "Your account", "アカウント"),
    ("ui.account.email", "Address", "メールアドレス"),
    ("ui.account.role", "Role", "権限"),
    ("ui.account.reports", "You approve for", "承認の対象者"),
    ("ui.account.lang", "Language", "表示言語"),
    ("ui.account.lang_browser", "As my browser says", "ブラウザーの設定に従う"),
    ("ui.account.password", "Change password", "パスワードの変更"),
    ("ui.account.current", "Current password", "現在のパスワード"),
    ("ui.account.new", "New password (8 characters or more)", "新しいパスワード（8文字以上）"),
    ("ui.account.saved", "Saved.", "保存しました。"),
    (
        "ui.account.must_change",
        "You signed in with a one-time password: choose a password of your own to go on.",
        "ワンタイムパスワードでログインしました。続けるには、ご自身のパスワードを設定してください。",
    ),
    (
        "ui.account.changed",
        "Password changed; your other sessions were signed out.",
        "パスワードを変更しました。他の端末はログアウトしました。",
    ),
    (
        "ui.account.wrong",
        "The current password is wrong; nothing was changed.",
        "現在のパスワードが違うため、変更していません。",
    ),
    (
        "ui.account.short",
        "The new password needs {} characters or more.",
        "新しいパスワードは {} 文字以上にしてください。",
    ),
    ("ui.role.sender", "Sender", "送信者"),
    ("ui.role.approver", "Approver", "承認者"),
    ("ui.role.admin", "Administrator", "管理者"),
    ("rcpt.pending", "waiting", "未送信"),
    ("rcpt.delivered", "delivered", "配送済み"),
    ("rcpt.deferred", "retrying", "再送待ち"),
    ("rcpt.failed", "failed", "失敗"),
    // Protected attachments: the part that replaces them, the mails, the
    // download page.
    (
        "protect.link.lead",
        "The attachments of this message are not in it: download them from the link below.",
        "このメールの添付ファイルは、下のリンクからダウンロードしてください。",
    ),
    ("protect.link.url", "Download: {}", "ダウンロード: {}"),
    (
        "protect.link.until",
        "Available until {} (at most {} downloads per file).",
        "有効期限: {}（1ファイルにつき {} 回まで）",
    ),
    (
        "protect.link.access.code",
        "Opening it sends a one-time code to the address this mail was sent to.",
        "開くと、このメールを受け取ったアドレスに確認コードが届きます。",
    ),
    (
        "protect.link.access.password",
        "Opening it asks for a password, which reaches you separately.",
        "開くにはパスワードが必要です（別途お知らせします）。",
    ),
    ("protect.from", "Sender: {}", "送信者: {}"),
    ("protect.files", "Files:", "ファイル:"),
    (
        "protect.zip.lead",
        "The attachments are in a password-protected zip (AES-256): {}. The password follows in a mail of its own.",
        "添付ファイルはパスワード付き ZIP（AES-256）にまとめています: {}。パスワードは別のメールでお知らせします。",
    ),
    (
        "protect.zip.lead_sender",
        "The attachments are in a password-protected zip (AES-256): {}. The sender tells you the password.",
        "添付ファイルはパスワード付き ZIP（AES-256）にまとめています: {}。パスワードは送信者からお知らせします。",
    ),
    ("protect.password.subject", "Password: {}", "パスワードのお知らせ: {}"),
    (
        "protect.password.lead.zip",
        "The password of the zip attached to the mail \"{}\" from {}:",
        "{1} から送られたメール「{0}」の添付 ZIP のパスワード:",
    ),
    (
        "protect.password.lead.link",
        "The password of the download link in the mail \"{}\" from {}:",
        "{1} から送られたメール「{0}」のダウンロードリンクのパスワード:",
    ),
    (
        "protect.password.lead.sender",
        "Your mail \"{}\" went out with its attachments protected. Pass this password on to its recipients:",
        "メール「{}」の添付ファイルを保護して送信しました。受信者にこのパスワードをお伝えください:",
    ),
    ("protect.code.subject", "Your code to download files", "ダウンロード用の確認コード"),
    (
        "protect.code.lead",
        "Your one-time code for the files from {} (valid for 10 minutes):",
        "{} からのファイルをダウンロードするための確認コードです（10分間有効）:",
    ),
    ("protect.page.title", "Files from {}", "{} からのファイル"),
    ("protect.page.subject", "Subject", "件名"),
    ("protect.page.until", "Available until", "有効期限"),
    ("protect.page.left", "{} of {} downloads left", "残り {} 回 / {} 回"),
    ("protect.page.download", "Download", "ダウンロード"),
    ("protect.page.ask_code", "Your address (the one this mail was sent to)", "このメールを受け取ったメールアドレス"),
    ("protect.page.send_code", "Send me a code", "確認コードを送る"),
    (
        "protect.page.code_sent",
        "If that address received the mail, a code is on its way to it.",
        "そのアドレスがこのメールの宛先であれば、確認コードを送りました。",
    ),
    ("protect.page.code", "Code", "確認コード"),
    ("protect.page.password", "Password", "パスワード"),
    ("protect.page.open", "Open", "開く"),
    ("protect.page.wrong", "That did not match. Try again.", "一致しません。もう一度お試しください。"),
    ("protect.page.revoked", "The sender withdrew these files.", "送信者がこのファイルの公開を取り消しました。"),
    ("protect.page.expired", "This link has expired.", "このリンクは有効期限が切れています。"),
    ("protect.page.pending", "These files are not available yet.", "このファイルはまだ公開されていません。"),
    (
        "protect.page.exhausted",
        "This file cannot be downloaded any more.",
        "このファイルはこれ以上ダウンロードできません。",
    ),
    ("protect.page.unknown", "This link is not valid.", "このリンクは無効です。"),
    ("protect.ui.title", "Download link", "ダウンロードリンク"),
    ("protect.ui.state", "State", "状態"),
    ("ui.access", "Opened with", "開き方"),
    ("protect.ui.revoke", "Revoke the link", "リンクを無効にする"),
    ("protect.ui.revoked", "The link is revoked.", "リンクを無効にしました。"),
    ("protect.ui.downloads", "Downloads", "ダウンロード履歴"),
    ("protect.ui.no_downloads", "Nobody has downloaded the files yet.", "まだダウンロードされていません。"),
    ("protect.status.active", "active", "公開中"),
    ("protect.status.revoked", "revoked", "無効化済み"),
    ("protect.status.expired", "expired", "期限切れ"),
    ("protect.status.pending", "not sent yet", "未送信"),
    (
        "check.dkim_breaks",
        "the upstream signature ({}) will not verify after {}",
        "{1} により送信元の署名（{0}）は検証できなくなります",
    ),
    (
        "check.dkim_resigns",
        "tomare signs the changed message for {} (selector {})",
        "tomare が変更後のメールを {}（セレクタ {}）で署名し直します",
    ),
    (
        "check.dkim_unsigned",
        "no [dkim] key for the sender's domain: the changed message goes out unsigned (DMARC may fail)",
        "送信者のドメインの [dkim] 鍵がありません: 変更後のメールは署名なしで送られます（DMARC が失敗するおそれ）",
    ),
    (
        "dkim.bad_name",
        "The domain and selector are letters, digits, dots and hyphens.",
        "ドメインとセレクタには英数字・ドット・ハイフンだけを使えます。",
    ),
    (
        "dkim.written",
        "Key written to {} (keep it secret; 0600). Publish this DNS record, then set [dkim] domain, selector and key_file:",
        "鍵を {} に書き出しました（秘密にしてください。0600）。次の DNS レコードを公開し、[dkim] の domain・selector・key_file を設定してください:",
    ),
    ("protect.cli.revoked", "Link of {} revoked.", "{} のリンクを無効にしました。"),
    (
        "protect.cli.none",
        "No link to revoke for {} (none, or revoked already).",
        "{} に無効にできるリンクはありません（無いか、無効化済み）。",
    ),
];

/// The text for `key` in Japanese, then English, joined by `sep`: for
/// people who have chosen no language (a recipient outside, an invitee).
pub fn both(key: &str, args: &[&dyn std::fmt::Display], sep: &str) -> String {
    format!("{}{sep}{}", t(Lang::Ja, key, args), t(Lang::En, key, args))
}

/// The table has this key (in both languages).
pub fn has(key: &str) -> bool {
    TABLE.iter().any(|(k, _, _)| *k == key)
}

/// The text for `key` in `lang`, with `args` filling the placeholders: `{}`
/// takes the next argument, `{0}`, `{1}`… a given one (for languages that
/// order them differently). An unknown key comes back as itself, so a typo
/// shows instead of crashing.
pub fn t(lang: Lang, key: &str, args: &[&dyn std::fmt::Display]) -> String {
    let Some((_, en, ja)) = TABLE.iter().find(|(k, _, _)| *k == key) else {
        return key.to_string();
    };
    let template = if lang == Lang::Ja { ja } else { en };
    let mut out = String::with_capacity(template.len() + 32);
    let mut next = 0;
    let mut rest = *template;
    while let Some(pos) = rest.find('{') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[pos..]);
            rest = "";
            break;
        };
        let inner = &after[..close];
        let index = if inner.is_empty() {
            next += 1;
            Some(next - 1)
        } else {
            inner.parse::<usize>().ok()
        };
        match index.and_then(|i| args.get(i)) {
            Some(a) => out.push_str(&a.to_string()),
            None => out.push_str(&rest[pos..pos + close + 2]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Placeholders in a template: `{}` and `{N}` alike.
#[cfg(test)]
fn placeholders(s: &str) -> usize {
    s.matches('{').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_every_key_with_the_same_placeholders() {
        for (key, en, ja) in TABLE {
            assert!(!en.is_empty() && !ja.is_empty(), "{key}");
            assert_eq!(placeholders(en), placeholders(ja), "{key}");
        }
        let mut keys: Vec<_> = TABLE.iter().map(|(k, _, _)| k).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "duplicate keys");
    }

    #[test]
    fn fills_placeholders() {
        assert_eq!(t(Lang::En, "queue.not_found", &[&"X1"]), "No message with id X1.");
        assert_eq!(t(Lang::Ja, "queue.not_found", &[&"X1"]), "ID X1 のメッセージはありません。");
        assert_eq!(t(Lang::En, "no.such.key", &[]), "no.such.key");
        assert_eq!(t(Lang::Ja, "ev.text", &[&"社外秘", &"body"]), "body に「社外秘」");
        assert_eq!(t(Lang::En, "ev.text", &[&"社外秘", &"body"]), "\"社外秘\" in body");
    }
}
