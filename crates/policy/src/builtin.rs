//! The built-in rule pack: one rule per mis-send accident of DESIGN §1.
//! Written in the same TOML as users' rules (and printed by
//! `tomare rules builtin`), so it can be read, copied and overridden.

use tomare_config::{Config, Rule};

/// The pack for this config (hold times and the visible-recipient
/// threshold come from it), as TOML.
pub fn builtin_toml(config: &Config) -> String {
    let external = fmt_duration(config.hold.external.0);
    let internal = fmt_duration(config.hold.internal.0);
    let threshold = config.policy.visible_recipients_threshold + 1;
    // `[protect] external_attachments`: a rule of the pack, so it shows in
    // `rules builtin` and a dry run like any other.
    let protect = match config.protect.external_attachments {
        tomare_config::ProtectSetting::Off => String::new(),
        mode => format!(
            "\n[[rule]]\nname = \"protect-external-attachments\"\n\
             description = \"Attachments sent outside the company are protected ([protect] external_attachments).\"\n\
             when = {{ all = [ {{ external_recipients = {{ min = 1 }} }}, {{ attachment_count = {{ min = 1 }} }} ] }}\n\
             then = [{{ protect_attachments = \"{}\" }}]\n",
            if mode == tomare_config::ProtectSetting::Zip { "zip" } else { "link" }
        ),
    };
    let keywords: String = config.detect.keywords.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ");
    format!(
        r#"# Built-in rules (tomare). Each fires on its own; the strictest outcome wins.

[[rule]]
name = "visible-recipients"
description = "Many outside addresses are visible to every recipient in To/Cc: they are moved to Bcc."
when = {{ visible_external_recipients = {{ min = {threshold} }} }}
then = [{{ convert_to_bcc = "undisclosed" }}]

[[rule]]
name = "malformed-recipient-headers"
description = "An address header is malformed (a stray line or text that is not an address), which can leak addresses."
when = {{ malformed_headers = true }}
then = [{{ hold = "30m" }}]

[[rule]]
name = "addresses-in-body"
description = "The body lists many email addresses."
when = {{ body_addresses = {{ min = {min_list} }} }}
then = [{{ hold = "30m" }}]

[[rule]]
name = "confidential-to-outside"
description = "Marked confidential or internal-only, and going outside: a supervisor must approve it."
when = {{ all = [ {{ external_recipients = {{ min = 1 }} }}, {{ detection = {{ detector = ["keyword"], name = [{keywords}] }} }} ] }}
then = [{{ require_approval = {{ approver = "supervisor", timeout = "4h", on_timeout = "reject" }} }}]

[[rule]]
name = "personal-data-to-outside"
description = "An attachment carries personal data (My Number, card or bank account numbers) and is going outside: a supervisor must approve it."
when = {{ all = [ {{ external_recipients = {{ min = 1 }} }}, {{ detection = {{ detector = ["my_number", "credit_card", "bank_account"], in = ["attachments"] }} }} ] }}
then = [{{ require_approval = {{ approver = "supervisor", timeout = "4h", on_timeout = "reject" }} }}]

[[rule]]
name = "unprotected-confidential-attachment"
description = "An attachment with confidential content is not protected."
when = {{ all = [ {{ external_recipients = {{ min = 1 }} }}, {{ attachment = {{ encrypted = false, detected = ["keyword", "my_number", "credit_card", "bank_account"] }} }} ] }}
then = [{{ hold = "30m" }}]

[[rule]]
name = "inspection-incomplete"
description = "Part of the message could not be read (password, damage, size or time limit): a person must look at it before it leaves."
when = {{ all = [ {{ external_recipients = {{ min = 1 }} }}, {{ inspection_incomplete = true }} ] }}
then = [{{ require_approval = {{ approver = "supervisor", timeout = "4h", on_timeout = "reject" }} }}]

[[rule]]
name = "lookalike-domain"
description = "A recipient domain looks like one of ours or one we write to, but is not it."
when = {{ lookalike_domain = true }}
then = [{{ hold = "1h" }}]

[[rule]]
name = "first-contact-with-attachments"
description = "First message ever to this recipient domain, and it carries attachments."
when = {{ all = [ {{ first_contact = true }}, {{ attachment_count = {{ min = 1 }} }} ] }}
then = [{{ hold = "15m" }}]
{protect}
[[rule]]
name = "external-hold"
description = "Mail to outside the company waits a moment, so that it can still be cancelled."
when = {{ external_recipients = {{ min = 1 }} }}
then = [{{ hold = "{external}" }}]

[[rule]]
name = "internal-only"
description = "Mail only inside the company."
when = {{ all_internal = true }}
then = [{{ hold = "{internal}" }}]
"#,
        min_list = config.detect.email_list_min,
    )
}

pub fn builtin_rules(config: &Config) -> Vec<Rule> {
    Config::parse_rules(&builtin_toml(config)).expect("the built-in pack parses")
}

fn fmt_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) { format!("{ms}ms") } else { format!("{}s", ms / 1000) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pack_parses_with_every_config() {
        let mut c = Config::default();
        assert_eq!(builtin_rules(&c).len(), 11);
        c.hold.external = tomare_config::Duration::parse("1h30m").unwrap();
        c.detect.keywords = vec!["\"quoted\"".into()];
        assert_eq!(builtin_rules(&c).len(), 11);
    }
}
