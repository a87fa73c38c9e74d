//! Accounts: argon2id password hashes (one account serves SMTP AUTH and the
//! web), who a signed-in person is (their role and whom they supervise),
//! and the throttle on failed sign-ins.
//!
//! Roles are read from the directory the rules use (config `[[user]]`s
//! over people set with `tomare user add` over `tomare users import`) and
//! `[org] admins`: an admin is named so there or in the directory; an
//! approver is named so or supervises someone; everyone else sends.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use tomare_config::Config;
use tomare_policy::Directory;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Sender,
    Approver,
    Admin,
}

impl Role {
    /// `sender` (or the directory's older `member`, or nothing), `approver`,
    /// `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "sender" | "member" => Some(Role::Sender),
            "approver" => Some(Role::Approver),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

/// What tomare knows of one person, for deciding what they may see and do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Whose mail they see besides their own: the people they supervise.
    pub reports: Vec<String>,
}

impl Person {
    pub fn of(config: &Config, directory: &Directory, email: &str) -> Person {
        let email = email.to_lowercase();
        let entry = directory.get(&email);
        let named = entry.and_then(|e| Role::parse(&e.role)).unwrap_or(Role::Sender);
        let reports: Vec<String> = directory.reports(&email).into_iter().map(str::to_string).collect();
        let role = if config.org.admins.iter().any(|a| a.eq_ignore_ascii_case(&email)) {
            Role::Admin
        } else if named == Role::Sender && !reports.is_empty() {
            Role::Approver
        } else {
            named
        };
        Person { name: entry.map(|e| e.name.clone()).unwrap_or_default(), email, role, reports }
    }
}

/// The shortest password the web accepts as a new one.
pub const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HashError(String);

pub fn hash_password(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| HashError(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(format!("salt: {e}")))?;
    let hash = Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| HashError(e.to_string()))?;
    Ok(hash.to_string())
}

/// A hash of nothing anyone knows, with the same parameters as real ones:
/// checked against for unknown accounts, so their answer takes as long.
/// `serve` makes it before it listens, so even the first unknown account
/// costs no more than a known one.
pub fn dummy_hash() -> Result<&'static str, HashError> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let hash = hash_password(&random_secret(32))?;
    Ok(DUMMY.get_or_init(|| hash))
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Checks `password` against the account's hash (`None`: no such
/// account, which costs the same argon2), off the async workers.
pub async fn check_password(hash: Option<String>, password: &str) -> bool {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify_password(&hash, &password),
        None => {
            if let Ok(dummy) = dummy_hash() {
                verify_password(dummy, &password);
            }
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// `n` random bytes, URL-safe base64 (no padding): session ids, CSRF and
/// API tokens, one-time passwords.
pub fn random_secret(n: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0u8; n];
    // Without the system's randomness nothing here is safe: fail loudly.
    getrandom::fill(&mut bytes).expect("the system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256: how sessions and tokens are kept in the database.
pub fn secret_hash(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Failed sign-ins per account and per address: past the limit within the
/// window, that account (or address) is refused until the window ends.
pub struct Throttle {
    per_account: u32,
    per_ip: u32,
    window_ms: i64,
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl Throttle {
    pub fn new(per_account: u32, per_ip: u32, window_ms: i64) -> Throttle {
        Throttle { per_account, per_ip, window_ms, failures: Mutex::new(HashMap::new()) }
    }

    fn keys(email: &str, ip: &str) -> [String; 2] {
        [format!("a:{}", email.to_lowercase()), format!("i:{ip}")]
    }

    /// An attempt to sign in as `email` from `ip` at `now`: counted at once
    /// (before the password is checked, so parallel guesses count too), or
    /// refused when the account or address is locked — then the
    /// milliseconds until it is not.
    pub fn attempt(&self, email: &str, ip: &str, now: i64) -> Option<i64> {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.retain(|_, (_, since)| now - *since < self.window_ms);
        let [account, addr] = Self::keys(email, ip);
        let over = |key: &str, limit: u32| {
            f.get(key).filter(|(n, _)| *n >= limit).map(|(_, since)| since + self.window_ms - now)
        };
        if let Some(wait) = over(&account, self.per_account).into_iter().chain(over(&addr, self.per_ip)).max() {
            return Some(wait);
        }
        for key in [account, addr] {
            f.entry(key).or_insert((0, now)).0 += 1;
        }
        None
    }

    /// A good sign-in: the account's count is cleared, and this attempt no
    /// longer counts against the address.
    pub fn succeeded(&self, email: &str, ip: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let [account, addr] = Self::keys(email, ip);
        f.remove(&account);
        if let Some(e) = f.get_mut(&addr) {
            e.0 = e.0.saturating_sub(1);
        }
    }
}

/// On a first start (no account is an admin), an admin account with a
/// random password: one of `[org] admins` when the config names any, else
/// `admin@` the first internal domain (made an admin in the directory).
/// Returns its address and password, to be shown once.
pub async fn first_admin(
    config: &Config,
    store: &dyn tomare_store::Store,
    org: tomare_model::OrgId,
    directory: &Directory,
) -> Result<Option<(String, String)>, FirstAdminError> {
    let accounts = store.list_users().await?;
    if accounts.iter().any(|a| Person::of(config, directory, &a.email).role == Role::Admin) {
        return Ok(None);
    }
    let email = match config.org.admins.first() {
        Some(a) => a.to_lowercase(),
        None => format!("admin@{}", config.org.postmaster_domain()),
    };
    let password = random_secret(12);
    store.put_user(org, &email, &hash_password(&password)?).await?;
    // One-time: the first sign-in asks for a password of the admin's own.
    store.set_must_change(&email).await?;
    if Person::of(config, directory, &email).role != Role::Admin {
        let known = store.directory(org).await?.into_iter().find(|e| e.email == email);
        let entry = tomare_store::DirectoryEntry {
            email: email.clone(),
            name: known.as_ref().map(|k| k.name.clone()).unwrap_or_default(),
            role: Role::Admin.as_str().into(),
            supervisor: known.as_ref().and_then(|k| k.supervisor.clone()),
            groups: known.map(|k| k.groups).unwrap_or_default(),
            source: tomare_store::Source::Cli,
        };
        store.put_person(org, &entry).await?;
    }
    Ok(Some((email, password)))
}

#[derive(Debug, thiserror::Error)]
pub enum FirstAdminError {
    #[error("{0}")]
    Store(#[from] tomare_store::StoreError),
    #[error("{0}")]
    Hash(#[from] HashError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_locks_an_account_and_an_address_for_the_window() {
        let t = Throttle::new(3, 5, 1000);
        for _ in 0..3 {
            assert_eq!(t.attempt("A@x", "1.1.1.1", 0), None);
        }
        assert_eq!(t.attempt("a@x", "2.2.2.2", 100), Some(900), "the account, from anywhere");
        assert_eq!(t.attempt("b@x", "1.1.1.1", 100), None, "the address has room left");
        assert_eq!(t.attempt("c@x", "1.1.1.1", 100), None);
        assert!(t.attempt("d@x", "1.1.1.1", 200).is_some(), "five from one address");
        assert_eq!(t.attempt("a@x", "2.2.2.2", 1000), None, "the window is over");
        // A success clears the account and does not count for the address.
        let t = Throttle::new(2, 2, 1000);
        assert_eq!(t.attempt("e@x", "3.3.3.3", 0), None);
        t.succeeded("e@x", "3.3.3.3");
        assert_eq!(t.attempt("e@x", "3.3.3.3", 1), None);
        t.succeeded("e@x", "3.3.3.3");
        assert_eq!(t.attempt("f@x", "3.3.3.3", 2), None);
        assert_eq!(t.attempt("f@x", "3.3.3.3", 3), None);
        assert!(t.attempt("f@x", "3.3.3.3", 4).is_some(), "two failures lock");
    }

    #[test]
    fn unknown_accounts_cost_the_same_argon2_as_known_ones() {
        let real = hash_password("anything").unwrap();
        let dummy = dummy_hash().unwrap();
        let (real, dummy_parsed) = (PasswordHash::new(&real).unwrap(), PasswordHash::new(dummy).unwrap());
        assert_eq!(real.algorithm, dummy_parsed.algorithm);
        assert_eq!(real.params, dummy_parsed.params, "same memory, time and parallelism");
        assert!(!verify_password(dummy, ""), "nobody knows its password");
    }

    #[test]
    fn passwords_verify_only_when_right() {
        let hash = hash_password("correct horse").unwrap();
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong"));
        assert!(!verify_password("not a hash", "correct horse"));
    }

    #[test]
    fn roles_from_the_config_and_the_directory() {
        let mut config = Config::default();
        config.org.admins = vec!["Root@example.com".into()];
        let user = |email: &str, role: &str, supervisor: Option<&str>| tomare_config::DirectoryUser {
            email: email.into(),
            role: role.into(),
            supervisor: supervisor.map(String::from),
            ..Default::default()
        };
        let d = Directory::new([
            user("taro@example.com", "member", Some("boss@example.com")),
            user("boss@example.com", "", None),
            user("chief@example.com", "admin", None),
        ]);
        assert_eq!(Person::of(&config, &d, "root@example.com").role, Role::Admin);
        assert_eq!(Person::of(&config, &d, "chief@example.com").role, Role::Admin);
        let boss = Person::of(&config, &d, "BOSS@example.com");
        assert_eq!((boss.role, boss.reports), (Role::Approver, vec!["taro@example.com".to_string()]));
        assert_eq!(Person::of(&config, &d, "taro@example.com").role, Role::Sender);
        assert_eq!(Person::of(&config, &d, "nobody@example.com").role, Role::Sender);
        assert_eq!(Role::parse("Approver"), Some(Role::Approver));
        assert_eq!(Role::parse("boss"), None);
    }
}
