//! `tomare`: the binary. It parses the command line, loads the config and
//! wires the stages together; the stages themselves live in their crates.

mod allocator;
mod archive_cmd;
mod archiver;
mod commands;
mod datadir;
mod serve;
mod show;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tomare_config::Config;

#[derive(Parser)]
#[command(name = "tomare", version, about = "Outbound mail gateway that stops mis-sent mail before it leaves")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: SMTP, web and delivery workers.
    Serve {
        /// Config file; without it, the embedded default (data in ./tomare-data).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Print or check configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Look at and act on queued messages (also while the server runs).
    Queue {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Show what tomare sees in a message (.eml) or a bare attachment.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Print only the extracted text (as pdftotext would).
        #[arg(long, conflicts_with = "json")]
        text: bool,
    },
    /// Dry run: what the rules would do with a message. No side effects.
    Check {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Envelope sender (default: the From header).
        #[arg(long)]
        from: Option<String>,
        /// Envelope recipients (default: To, Cc and Bcc).
        #[arg(long)]
        to: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// The rules: reload them in the running server, or print the built-in pack.
    Rules {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// The archive: search, export, verify, reindex, import, legal hold.
    Archive {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: ArchiveCommand,
    },
    /// The databases' schema: which migrations are applied, and applying them.
    Db {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Protected attachments: a message's download link, and revoking it.
    Protect {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: ProtectCommand,
    },
    /// DKIM: make the key that signs what tomare changes.
    Dkim {
        #[command(subcommand)]
        command: DkimCommand,
    },
    /// Users: SMTP AUTH passwords and the directory (supervisors, groups).
    #[command(alias = "users")]
    User {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum DkimCommand {
    /// Make a signing key (PEM, 0600) and print its DNS TXT record.
    Keygen {
        #[arg(long)]
        domain: String,
        #[arg(long)]
        selector: String,
        /// The key file to write (never over an existing one).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = DkimAlgorithm::Rsa)]
        algorithm: DkimAlgorithm,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DkimAlgorithm {
    /// RSA-2048 (rsa-sha256): what every verifier knows.
    Rsa,
    /// Ed25519 (RFC 8463): short; not every verifier knows it yet.
    Ed25519,
}

#[derive(Subcommand)]
pub enum ProtectCommand {
    /// A message's download link: its state, files and every download.
    Show {
        /// The message's queue id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a message's download link: its files stop downloading at
    /// once, even after the mail went out.
    Revoke {
        /// The message's queue id.
        id: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a fully commented config with every default.
    Example,
    /// Check a config file; each error names its line.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// List messages, newest first.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Show one message: envelope, recipients' status, event log.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Deliver a held message now.
    Release { id: String },
    /// Cancel a message that has not been delivered yet.
    Cancel { id: String },
    /// Approve a message that waits for approval: it is delivered.
    Approve { id: String },
    /// Refuse a message that waits for approval; the sender is told why.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Check the rules and make the running server use them (SIGHUP does the
    /// same). A server keeps its last good rules when new ones are refused.
    Reload,
    /// Print the built-in rule pack, as TOML.
    Builtin,
    /// Run a candidate rule set (replacing the config's [[rule]]s and rules
    /// file) over archived mail and show what it would have done differently.
    Replay {
        rules: PathBuf,
        /// Which archived messages (the search language); all by default.
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        query: String,
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Eml,
    Mbox,
}

#[derive(Subcommand)]
pub enum ArchiveCommand {
    /// Search archived mail, newest first. Words, "phrases", from: to: cc:
    /// subject: filename: has:attachment before: after: larger: smaller:
    /// state: rule:, -negation, OR, parentheses.
    Search {
        /// (May start with `-`: `-state:imported`.)
        #[arg(allow_hyphen_values = true)]
        query: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Write messages out: IDs, or every match of --query.
    Export {
        ids: Vec<String>,
        #[arg(long, allow_hyphen_values = true)]
        query: Option<String>,
        #[arg(long, value_enum, default_value_t = ExportFormat::Eml)]
        format: ExportFormat,
        /// A directory (eml) or a file (mbox).
        #[arg(long)]
        out: PathBuf,
        /// The message as received, not as delivered (when the rules changed it).
        #[arg(long)]
        original: bool,
    },
    /// Check the hash chain, its signed checkpoints and every stored
    /// message. Exit 0 only when intact; otherwise names the first bad record.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the search index from the stored messages.
    Reindex,
    /// Bring existing mail in: a maildir, an mbox (e.g. a Google Vault
    /// export) or a folder of .eml files. Also seeds the recipient history.
    Import { path: PathBuf },
    /// Put messages under legal hold (retention never deletes them), or
    /// lift it with --release.
    Hold {
        ids: Vec<String>,
        #[arg(long, allow_hyphen_values = true)]
        query: Option<String>,
        #[arg(long)]
        release: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Apply [archive] retention_days now (the server does it hourly).
    Retention,
}

#[derive(Subcommand)]
pub enum DbCommand {
    /// List every migration of tomare.db and archive.db: applied (when) or pending.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Apply the pending migrations now (`serve` also applies them at start).
    Migrate,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Replace the directory from a CSV file: email,name,role,supervisor,groups
    /// (groups separated by ";"). UTF-8 or Shift_JIS.
    Import { file: PathBuf },
    /// Add an account (or set a new password): one account serves SMTP AUTH
    /// and the web. The password is read from standard input.
    Add {
        email: String,
        /// `sender` (the default), `approver` or `admin`.
        #[arg(long)]
        role: Option<String>,
        /// The person's supervisor (who approves their mail).
        #[arg(long, value_name = "EMAIL")]
        supervisor: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Another sender this user may use after AUTH: an address, or
        /// `@DOMAIN` for every address of one of the org's domains
        /// (repeatable). Given, it replaces the user's grants; by default a
        /// user sends only as their own address.
        #[arg(long = "send-as", value_name = "ADDR")]
        send_as: Vec<String>,
        /// Read the password from standard input without a prompt (the
        /// password is always read from standard input).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password, read from standard input; their web sessions end.
    Passwd {
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Everyone tomare knows: the config's [[user]]s, imported and added
    /// people, accounts; with role, supervisor, source and whether they can
    /// sign in.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make an API token for an account (printed once; send it as
    /// `Authorization: Bearer TOKEN`). A new password removes the account's
    /// tokens too.
    Token {
        email: String,
        /// Remove every token of the account instead.
        #[arg(long)]
        revoke: bool,
    },
}

fn main() -> ExitCode {
    // Held mail, the archive and password hashes live in files tomare
    // creates: whatever umask it was started with, they are its user's only.
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        // A command whose output goes into `head` ends quietly when the
        // pipe closes, as other Unix tools do (Rust ignores SIGPIPE and
        // println! would panic). Not for `serve`: there a closed socket
        // must be an error, not the end of the process.
        // SAFETY: restores the default disposition of one signal.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Serve { config: path, log_format } => {
            load_with_rules(path.as_deref()).and_then(|c| serve::run(c, path, log_format))
        }
        Command::Rules { config, command } => {
            load_with_rules(config.as_deref()).and_then(|c| commands::rules(c, command))
        }
        Command::Config { command } => commands::config(command),
        Command::Queue { config, command } => load(config.as_deref()).and_then(|c| commands::queue(c, command)),
        Command::Inspect { file, config, json, text } => {
            load(config.as_deref()).and_then(|c| commands::inspect(c, &file, json, text))
        }
        Command::Check { file, config, from, to, json } => {
            load_with_rules(config.as_deref()).and_then(|c| commands::check(c, &file, from, to, json))
        }
        Command::Archive { config, command } => load(config.as_deref()).and_then(|c| archive_cmd::archive(c, command)),
        Command::Db { config, command } => load(config.as_deref()).and_then(|c| commands::db(c, command)),
        Command::User { config, command } => load(config.as_deref()).and_then(|c| commands::user(c, command)),
        Command::Dkim { command } => commands::dkim(command),
        Command::Protect { config, command } => load(config.as_deref()).and_then(|c| commands::protect(c, command)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tomare: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The config at `path` (else at `$TOMARE_CONFIG`), or the embedded default.
pub fn load(path: Option<&Path>) -> Result<Config> {
    let from_env = std::env::var_os("TOMARE_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from);
    let Some(path) = path.or(from_env.as_deref()) else {
        return Ok(Config::default());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::parse(&text).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("{}: {e}", path.display())).collect();
        anyhow::anyhow!("invalid config:\n{}", lines.join("\n"))
    })?;
    Ok(config)
}

/// [`load`], and the rules built as `serve` builds them (for the commands
/// that use rules: a broken rules file must not stop `queue list`).
pub fn load_with_rules(path: Option<&Path>) -> Result<Config> {
    let config = load(path)?;
    let from_env = std::env::var_os("TOMARE_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from);
    let source =
        path.or(from_env.as_deref()).and_then(|p| std::fs::read_to_string(p).ok().map(|t| (p.to_path_buf(), t)));
    check_rules(&config, source.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))?;
    Ok(config)
}

/// Builds the rule engine as `serve` will, so that `config check`, `rules
/// reload` and `serve` refuse the same rules, each naming the file and the
/// line of the rule (a bad pattern, an unknown notify target, an approver
/// that is nobody).
pub fn check_rules(config: &Config, source: Option<(&Path, &str)>) -> Result<()> {
    let Err(e) = tomare_policy::Engine::new(config, load_rules_file(config)?) else { return Ok(()) };
    let in_config = source.and_then(|(p, text)| rule_line(text, &e.rule).map(|l| (p.to_path_buf(), l)));
    let in_file = || {
        let file = config.rules_path();
        let text = std::fs::read_to_string(&file).ok()?;
        rule_line(&text, &e.rule).map(|l| (file.clone(), l))
    };
    match in_config.or_else(in_file) {
        Some((file, line)) => bail!("invalid rules:\n{}: line {line}: {e}", file.display()),
        None => bail!("invalid rules: {e}"),
    }
}

/// The line (from 1) of `name = "NAME"` in a TOML text.
fn rule_line(text: &str, name: &str) -> Option<usize> {
    let names = |line: &str| {
        line.split_once('=').is_some_and(|(k, v)| k.trim() == "name" && v.trim().trim_matches('"') == name)
    };
    text.lines().position(names).map(|i| i + 1)
}

/// The rules of `[policy] rules_file`, if one is set, each error with its line.
pub fn load_rules_file(config: &Config) -> Result<Vec<tomare_config::Rule>> {
    let path = &config.rules_path();
    // The default file (data_dir/rules.toml) need not exist; a named one must.
    if config.policy.rules_file.is_none() && !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Config::parse_rules(&text).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("{}: {e}", path.display())).collect();
        anyhow::anyhow!("invalid rules:\n{}", lines.join("\n"))
    })
}

/// The rule engine for `config`: built-in pack, `[[rule]]`s, rules file.
pub fn engine(config: &Config) -> Result<tomare_policy::Engine> {
    tomare_policy::Engine::new(config, load_rules_file(config)?).map_err(|e| anyhow::anyhow!("rules: {e}"))
}
