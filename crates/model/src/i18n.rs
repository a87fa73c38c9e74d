//! Every user-facing string (SMTP replies aside), in English and Japanese.
//! Keys are stable identifiers; `{}` placeholders are filled in order.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
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
    ("queue.sandbox_copy", "Sandbox copy: {}", "sandbox のコピー: {}"),
    ("config.ok", "{}: OK", "{}: 問題ありません"),
    ("config.error", "{}: line {}: {}", "{}: {} 行目: {}"),
    ("config.read_error", "cannot read {}: {}", "{} を読めません: {}"),
    ("user.saved", "Password set for {}.", "{} のパスワードを設定しました。"),
    ("user.outside_org", "{} is not in the organisation's domains ({}).", "{} は組織のドメイン（{}）に含まれません。"),
    ("user.password_prompt", "Password (read from standard input):", "パスワード（標準入力から読み込みます）:"),
    ("user.empty_password", "The password must not be empty.", "パスワードを空にはできません。"),
    ("user.none", "No users.", "ユーザーはいません。"),
    ("inspect.subject", "Subject", "件名"),
    ("inspect.malformed", "Malformed header", "不正なヘッダー"),
    ("inspect.body", "Body", "本文"),
    ("inspect.encrypted", "password-protected", "パスワード保護"),
    ("inspect.mismatch", "name and content disagree", "ファイル名と中身の形式が不一致"),
    ("inspect.no_detections", "Detections: none", "検出: なし"),
    ("inspect.complete", "Inspection complete.", "検査は完了しました。"),
    ("inspect.incomplete", "Inspection incomplete:", "検査は完了していません:"),
];

/// The text for `key` in `lang`, with `args` filling the `{}` in order.
/// An unknown key comes back as itself, so a typo shows instead of crashing.
pub fn t(lang: Lang, key: &str, args: &[&dyn std::fmt::Display]) -> String {
    let Some((_, en, ja)) = TABLE.iter().find(|(k, _, _)| *k == key) else {
        return key.to_string();
    };
    let template = if lang == Lang::Ja { ja } else { en };
    let mut out = String::with_capacity(template.len() + 32);
    let mut args = args.iter();
    let mut rest = *template;
    while let Some(pos) = rest.find("{}") {
        out.push_str(&rest[..pos]);
        match args.next() {
            Some(a) => out.push_str(&a.to_string()),
            None => out.push_str("{}"),
        }
        rest = &rest[pos + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_every_key_with_the_same_placeholders() {
        for (key, en, ja) in TABLE {
            assert!(!en.is_empty() && !ja.is_empty(), "{key}");
            assert_eq!(en.matches("{}").count(), ja.matches("{}").count(), "{key}");
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
    }
}
