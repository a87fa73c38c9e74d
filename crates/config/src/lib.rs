//! The one TOML configuration file: typed sections, a default for every key,
//! unknown keys refused with their line, and the commented example that
//! `tomare config example` prints.
//!
//! Parsing is pure: this crate reads no files and opens no sockets.

pub mod rules;
mod units;

pub use rules::{Action, Cond, Rule, RulesFile};
pub use units::{ByteSize, Duration, IpNet, Reserve};

use serde::Deserialize;
use std::path::PathBuf;

/// The commented example; also the source of truth for the documented defaults
/// (a test checks that it parses to exactly `Config::default()`).
pub const EXAMPLE: &str = include_str!("example.toml");

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub smtp: Smtp,
    pub web: Web,
    pub storage: Storage,
    pub delivery: Delivery,
    pub hold: Hold,
    pub notify: Notify,
    pub org: Org,
    pub inspect: Inspect,
    pub detect: Detect,
    pub policy: Policy,
    pub archive: Archive,
    pub protect: Protect,
    pub dkim: Dkim,
    /// Rules of this organisation, after the built-in pack.
    pub rule: Vec<Rule>,
    /// The directory: who supervises whom, who is in which group.
    pub user: Vec<DirectoryUser>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// The built-in rule pack (one rule per mis-send accident).
    pub builtin: bool,
    /// More `[[rule]]` tables in a file of their own (reloaded with
    /// `tomare rules reload` or SIGHUP; what the web's rule editor edits).
    /// Default: `data_dir/rules.toml`, when it exists.
    pub rules_file: Option<PathBuf>,
    /// External addresses visible in To/Cc above which the built-in pack
    /// converts them to Bcc.
    pub visible_recipients_threshold: usize,
}

impl Config {
    /// The rules file: `[policy] rules_file`, else `data_dir/rules.toml`
    /// (which need not exist).
    pub fn rules_path(&self) -> PathBuf {
        self.policy.rules_file.clone().unwrap_or_else(|| self.storage.data_dir.join("rules.toml"))
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy { builtin: true, rules_file: None, visible_recipients_threshold: 2 }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirectoryUser {
    pub email: String,
    #[serde(default)]
    pub name: String,
    /// `member`, `approver` or `admin`.
    #[serde(default)]
    pub role: String,
    /// The supervisor's address.
    #[serde(default)]
    pub supervisor: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Smtp {
    pub listen: String,
    /// Name in the greeting and Received headers; the machine's host name when empty.
    pub hostname: String,
    pub allowed_networks: Vec<IpNet>,
    pub max_message_size: ByteSize,
    pub max_recipients: usize,
    /// Simultaneous connections from `allowed_networks`.
    pub max_connections: usize,
    /// Simultaneous connections from everywhere else, together.
    pub max_outside_connections: usize,
    /// Simultaneous connections from one address outside `allowed_networks`.
    pub max_connections_per_ip: usize,
    /// Longest wait for the next whole command.
    pub idle_timeout: Duration,
    /// Longest session, whatever happens in it.
    pub session_timeout: Duration,
    /// Longest DATA phase.
    pub data_timeout: Duration,
    /// Bytes per second a DATA phase must average after its first 30 s.
    pub min_data_rate: ByteSize,
    /// Clients outside `allowed_networks` must authenticate within this long.
    pub preauth_timeout: Duration,
    /// Failed AUTH attempts for one account before it is locked for `auth_lockout`.
    pub auth_max_failures: u32,
    /// Failed AUTH attempts from one address before it is locked.
    pub auth_max_failures_per_ip: u32,
    pub auth_lockout: Duration,
    /// Refused after this many bad commands in one session.
    pub max_errors: usize,
    pub tls: Option<Tls>,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            listen: "127.0.0.1:2525".into(),
            hostname: String::new(),
            allowed_networks: vec![IpNet::parse("127.0.0.0/8").expect("valid literal")],
            max_message_size: ByteSize(50 * 1000 * 1000),
            max_recipients: 1000,
            max_connections: 500,
            max_outside_connections: 50,
            max_connections_per_ip: 5,
            idle_timeout: Duration::secs(300),
            session_timeout: Duration::secs(1800),
            data_timeout: Duration::secs(600),
            min_data_rate: ByteSize(10_000),
            preauth_timeout: Duration::secs(30),
            auth_max_failures: 5,
            auth_max_failures_per_ip: 20,
            auth_lockout: Duration::secs(900),
            max_errors: 20,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Web {
    pub listen: String,
    /// Where people reach the web listener: every link in a notice starts
    /// with it. Default: `http://` + `listen`.
    pub public_url: Option<String>,
}

impl Default for Web {
    fn default() -> Self {
        Web { listen: "127.0.0.1:8025".into(), public_url: None }
    }
}

impl Web {
    /// `public_url`, or `http://` + `listen`, without a trailing `/`.
    pub fn base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    pub data_dir: PathBuf,
    /// New mail is refused (452) when the data disk has less free space
    /// than this, so state changes can still be written.
    pub min_free: Reserve,
    /// Leave the data directory's permissions as they are (otherwise a
    /// group- or world-readable one is tightened to the owner at start).
    pub allow_shared_permissions: bool,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            data_dir: "./tomare-data".into(),
            min_free: Reserve::Bytes(1_000_000_000),
            allow_shared_permissions: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    Sandbox,
    Relay,
    Mx,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Delivery {
    pub mode: DeliveryMode,
    pub retry: Vec<Duration>,
    pub max_lifetime: Duration,
    /// Messages delivered at the same time (outbound connections).
    pub concurrency: usize,
    pub connect_timeout: Duration,
    /// Time allowed for each SMTP reply from the remote server.
    pub command_timeout: Duration,
    /// Our name in EHLO; `[smtp] hostname` when empty.
    pub helo_name: String,
    pub relay: Relay,
    pub mx: Mx,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            mode: DeliveryMode::Sandbox,
            retry: ["1m", "5m", "15m", "30m", "1h", "2h", "4h"]
                .iter()
                .map(|s| Duration::parse(s).expect("valid literal"))
                .collect(),
            max_lifetime: Duration::secs(5 * 86_400),
            concurrency: 16,
            connect_timeout: Duration::secs(30),
            command_timeout: Duration::secs(300),
            helo_name: String::new(),
            relay: Relay::default(),
            mx: Mx::default(),
        }
    }
}

impl Delivery {
    /// The wait before attempt number `attempts + 1`; the last entry repeats.
    pub fn retry_after(&self, attempts: u32) -> std::time::Duration {
        let i = (attempts.max(1) as usize - 1).min(self.retry.len().saturating_sub(1));
        self.retry.get(i).map(|d| d.0).unwrap_or(std::time::Duration::from_secs(300))
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file of CAs to trust instead of the built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            host: "smtp-relay.example.net".into(),
            port: 587,
            tls: TlsMode::Starttls,
            username: None,
            password: None,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Mx {
    pub port: u16,
    /// Resolvers as `ip:port`; the system's (`/etc/resolv.conf`) when empty.
    pub nameservers: Vec<String>,
}

impl Default for Mx {
    fn default() -> Self {
        Mx { port: 25, nameservers: Vec::new() }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Hold {
    pub external: Duration,
    pub internal: Duration,
}

impl Default for Hold {
    fn default() -> Self {
        Hold { external: Duration::secs(300), internal: Duration::secs(0) }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Archive {
    /// Keep every message (as received and as delivered) as searchable,
    /// tamper-evident evidence in `data_dir/blobs` and `data_dir/index`.
    pub enabled: bool,
    /// Archived mail older than this many days is removed (legally held
    /// mail never is). 0 keeps everything.
    pub retention_days: u64,
}

impl Default for Archive {
    fn default() -> Self {
        Archive { enabled: true, retention_days: 0 }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Org {
    pub name: String,
    pub internal_domains: Vec<String>,
    /// Addresses told when a rule says `notify = "admin"`.
    pub admins: Vec<String>,
    /// The org's time zone as an offset from UTC (`"+09:00"`, `"UTC"`):
    /// how notices write the end of a hold or an approval's deadline.
    pub time_zone: String,
}

impl Default for Org {
    fn default() -> Self {
        Org {
            name: "Example Corp".into(),
            internal_domains: vec!["example.com".into()],
            admins: Vec::new(),
            time_zone: "+09:00".into(),
        }
    }
}

impl Org {
    /// The domain tomare's own mail comes from (MAILER-DAEMON@…): the first
    /// internal domain.
    pub fn postmaster_domain(&self) -> &str {
        self.internal_domains.first().map(String::as_str).unwrap_or("localhost")
    }

    /// `time_zone` in minutes east of UTC (0 when it does not read: `config
    /// check` refuses that).
    pub fn utc_offset_minutes(&self) -> i32 {
        tomare_model::parse_utc_offset(&self.time_zone).unwrap_or(0)
    }
}

/// How attachments are protected when a rule (or `external_attachments`)
/// says so: a download link under `[web] public_url`, or an AES-256 zip
/// whose password follows in a mail of its own.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Protect {
    /// Protect every attachment of mail to outside: `off`, `link` or `zip`
    /// (the built-in pack gets a rule that does it).
    pub external_attachments: ProtectSetting,
    /// Recipients in these domains (or their subdomains) get the zip
    /// whenever protection applies, whatever mode the rule named.
    pub zip_domains: Vec<String>,
    /// How long a download link works (at most `link_max_expiry`).
    pub link_expiry: Duration,
    /// The longest expiry a link may be given.
    pub link_max_expiry: Duration,
    /// Downloads allowed per file.
    pub link_max_downloads: u32,
    /// What opening a link asks for: `none`, `password` or `code` (a
    /// one-time code mailed to the recipient's own address).
    pub link_access: LinkAccess,
    /// Who gets the password of a zip (or of a `password` link):
    /// `recipients` (in a mail of its own) or `sender` (to pass on).
    pub password_to: PasswordTo,
    /// The password mail follows the delivered message after this.
    pub zip_password_delay: Duration,
}

impl Default for Protect {
    fn default() -> Self {
        Protect {
            external_attachments: ProtectSetting::Off,
            zip_domains: Vec::new(),
            link_expiry: Duration::secs(7 * 86_400),
            link_max_expiry: Duration::secs(30 * 86_400),
            link_max_downloads: 5,
            link_access: LinkAccess::Code,
            password_to: PasswordTo::Recipients,
            zip_password_delay: Duration::secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProtectSetting {
    #[default]
    Off,
    Link,
    Zip,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkAccess {
    None,
    Password,
    #[default]
    Code,
}

impl LinkAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAccess::None => "none",
            LinkAccess::Password => "password",
            LinkAccess::Code => "code",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PasswordTo {
    #[default]
    Recipients,
    Sender,
}

/// DKIM signing of what tomare changes: the sender's domain's key signs
/// every message tomare modified (and the mail it writes itself).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Dkim {
    pub domain: Option<String>,
    pub selector: Option<String>,
    /// Relative to the data directory when not absolute.
    pub key_file: Option<PathBuf>,
    /// More domains, each with the same three keys.
    pub keys: Vec<DkimKey>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    pub key_file: PathBuf,
}

impl Dkim {
    /// Every configured key: the top-level one first.
    pub fn all(&self) -> Vec<DkimKey> {
        let mut out = Vec::new();
        if let (Some(domain), Some(selector), Some(key_file)) = (&self.domain, &self.selector, &self.key_file) {
            out.push(DkimKey { domain: domain.clone(), selector: selector.clone(), key_file: key_file.clone() });
        }
        out.extend(self.keys.iter().cloned());
        out
    }
}

/// Which notices tomare sends besides those the rules ask for.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Notify {
    pub on_hold: OnHold,
}

/// When the sender of a held (or waiting) message is told, with the links
/// to cancel it or send it now.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnHold {
    /// Every held message.
    #[default]
    Always,
    /// Only when a rule fired, not for the plain hold of mail to outside.
    Rules,
    Never,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Inspect {
    /// Bytes decompressed from archives, documents and PDF streams, per message.
    pub max_decompressed: ByteSize,
    /// Archives and attached messages nested deeper are not opened.
    pub max_depth: usize,
    /// Entries read from one archive.
    pub max_entries: usize,
    /// Wall-clock time for inspecting one message.
    pub time_budget: Duration,
    /// Extracted text kept per message (for detectors, storage and search).
    pub max_text: ByteSize,
    /// Text in images (and scanned PDF pages) read by the `tesseract`
    /// program: `auto` (when it is installed with Japanese and English) or
    /// `off`. Without it an image that may carry text is not inspected, and
    /// the inspection says so.
    pub ocr: OcrMode,
    /// Images larger than this many pixels are not read (incomplete).
    pub ocr_max_pixels: u64,
    /// Scanned pages read per PDF; more make the inspection incomplete.
    pub ocr_max_pages: usize,
}

impl Default for Inspect {
    fn default() -> Self {
        Inspect {
            max_decompressed: ByteSize(200 * 1000 * 1000),
            max_depth: 8,
            max_entries: 1000,
            time_budget: Duration::secs(20),
            max_text: ByteSize(20 * 1000 * 1000),
            ocr: OcrMode::Auto,
            ocr_max_pixels: 40_000_000,
            ocr_max_pages: 20,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OcrMode {
    #[default]
    Auto,
    Off,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Detect {
    /// Matched after NFKC normalisation and case folding.
    pub keywords: Vec<String>,
    pub regex: Vec<RegexDetector>,
    pub my_number: bool,
    pub credit_card: bool,
    pub phone: bool,
    pub bank_account: bool,
    pub email_list: bool,
    /// Distinct addresses in one text that make an address list.
    pub email_list_min: usize,
}

impl Default for Detect {
    fn default() -> Self {
        Detect {
            keywords: [
                "社外秘",
                "社内限り",
                "社内限定",
                "関係者外秘",
                "部外秘",
                "極秘",
                "機密",
                "confidential",
                "internal only",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            regex: Vec::new(),
            my_number: true,
            credit_card: true,
            phone: true,
            bank_account: true,
            email_list: true,
            email_list_min: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegexDetector {
    pub name: String,
    pub pattern: String,
}

/// One problem in a config file, with the 1-based line it is on (0 when it
/// concerns the file as a whole, such as two keys that must go together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => f.write_str(&self.message),
            n => write!(f, "line {n}: {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// serde stops at the first error; to name each one, the offending line is
/// blanked and the text parsed again, a bounded number of times.
fn parse_with_lines<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut text = text.to_string();
    for _ in 0..32 {
        match toml::from_str::<T>(&text) {
            Ok(value) if errors.is_empty() => return Ok(value),
            Ok(_) => break,
            Err(e) => {
                // Blanking a line can remove a required key: such an error
                // is ours, not the file's.
                if !errors.is_empty() && e.message().starts_with("missing field") {
                    break;
                }
                let offset = e.span().map(|s| s.start).unwrap_or(0);
                let line = text[..offset.min(text.len())].matches('\n').count() + 1;
                errors.push(ConfigError { line, message: e.message().trim().to_string() });
                let Some(span) = e.span() else { break };
                let start = text[..span.start].rfind('\n').map(|i| i + 1).unwrap_or(0);
                let end = text[span.start..].find('\n').map(|i| span.start + i).unwrap_or(text.len());
                // A broken table header cannot be blanked without moving its
                // keys into the table before it: stop there.
                if text[start..end].trim_start().starts_with('[') {
                    break;
                }
                text.replace_range(start..end, &" ".repeat(end - start));
            }
        }
    }
    errors.sort_by_key(|e| e.line);
    errors.dedup();
    Err(errors)
}

impl Config {
    /// Parses `text`, or returns every error found, each with its line.
    pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        let config: Config = parse_with_lines(text)?;
        config.validate().map(|()| config).map_err(|e| vec![e])
    }

    /// Parses a rules file (`[[rule]]` tables only).
    pub fn parse_rules(text: &str) -> Result<Vec<Rule>, Vec<ConfigError>> {
        parse_with_lines::<RulesFile>(text).map(|f| f.rule)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: &str| Err(ConfigError { line: 0, message: message.into() });
        if self.org.internal_domains.is_empty() {
            return fail("[org] internal_domains must name at least one domain");
        }
        if self.delivery.retry.is_empty() {
            return fail("[delivery] retry must list at least one wait");
        }
        if self.delivery.concurrency == 0 {
            return fail("[delivery] concurrency must be at least 1");
        }
        if tomare_model::parse_utc_offset(&self.org.time_zone).is_none() {
            return fail("[org] time_zone must be an offset from UTC such as \"+09:00\" (or \"UTC\")");
        }
        if let Some(url) = &self.web.public_url {
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.chars().any(|c| c.is_whitespace() || c.is_control())) {
                return fail(
                    "[web] public_url must be an http:// or https:// address, e.g. \"https://tomare.example.com\"",
                );
            }
        }
        let smtp = &self.smtp;
        let positive = [
            ("max_connections", smtp.max_connections as u64),
            ("max_connections_per_ip", smtp.max_connections_per_ip as u64),
            ("auth_max_failures", smtp.auth_max_failures as u64),
            ("auth_max_failures_per_ip", smtp.auth_max_failures_per_ip as u64),
            ("max_errors", smtp.max_errors as u64),
            ("max_recipients", smtp.max_recipients as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return fail(&format!("[smtp] {key} must be at least 1"));
            }
        }
        let times = [
            ("idle_timeout", smtp.idle_timeout),
            ("session_timeout", smtp.session_timeout),
            ("data_timeout", smtp.data_timeout),
            ("preauth_timeout", smtp.preauth_timeout),
            ("auth_lockout", smtp.auth_lockout),
        ];
        for (key, value) in times {
            if value.0.is_zero() {
                return fail(&format!("[smtp] {key} must be longer than 0"));
            }
        }
        if self.delivery.mode == DeliveryMode::Relay && self.delivery.relay.host.is_empty() {
            return fail("[delivery.relay] host is required when mode = \"relay\"");
        }
        let p = &self.protect;
        if p.link_max_downloads == 0 {
            return fail("[protect] link_max_downloads must be at least 1");
        }
        if p.link_expiry.0.is_zero() || p.link_expiry.0 > p.link_max_expiry.0 {
            return fail("[protect] link_expiry must be longer than 0 and at most link_max_expiry");
        }
        let d = &self.dkim;
        if [d.domain.is_some(), d.selector.is_some(), d.key_file.is_some()].iter().filter(|x| **x).count() % 3 != 0 {
            return fail("[dkim] domain, selector and key_file go together");
        }
        if self.delivery.relay.username.is_some() != self.delivery.relay.password.is_some() {
            return fail("[delivery.relay] username and password go together");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_is_the_default() {
        assert_eq!(Config::parse(EXAMPLE).unwrap(), Config::default());
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn limits_that_would_lock_everyone_out_are_refused() {
        for bad in
            ["auth_max_failures = 0", "max_connections_per_ip = 0", "idle_timeout = \"0s\"", "preauth_timeout = \"0\""]
        {
            let errors = Config::parse(&format!("[smtp]\n{bad}\n")).unwrap_err();
            assert!(errors[0].message.contains(bad.split(' ').next().unwrap()), "{bad}: {errors:?}");
        }
        assert!(Config::parse("[smtp]\nmax_outside_connections = 0\n").is_ok(), "no outsiders at all is a choice");
    }

    #[test]
    fn every_unknown_key_is_named_with_its_line() {
        let text = "[smtp]\nlisten = \"0.0.0.0:25\"\nlisen = \"x\"\n[hold]\nexternal = \"10m\"\nextrnal = \"1m\"\n";
        let errors = Config::parse(text).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 6], "{errors:?}");
        assert!(errors[0].message.contains("lisen"), "{}", errors[0].message);
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        let errors = Config::parse("[delivery]\nmode = \"carrier-pigeon\"\n").unwrap_err();
        assert_eq!(errors[0].line, 2);
        let errors = Config::parse("[hold]\n\nexternal = \"5 fortnights\"\n").unwrap_err();
        assert_eq!(errors[0].line, 3);
        assert!(errors[0].message.contains("duration"), "{}", errors[0].message);
        let errors = Config::parse("[smtp]\nallowed_networks = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert_eq!(errors[0].line, 2);
    }

    #[test]
    fn retry_schedule_repeats_its_last_wait() {
        let d = Delivery::default();
        assert_eq!(d.retry_after(1).as_secs(), 60);
        assert_eq!(d.retry_after(2).as_secs(), 300);
        assert_eq!(d.retry_after(7).as_secs(), 4 * 3600);
        assert_eq!(d.retry_after(50).as_secs(), 4 * 3600);
    }
}
