//! DKIM signing (RFC 6376, relaxed/relaxed; rsa-sha256, and ed25519-sha256
//! of RFC 8463) of the messages tomare changes or writes, so they still
//! pass DKIM and DMARC at the recipient. The crypto is ring's (already in
//! the build through rustls); the canonicalization is here, checked against
//! an independent verifier (dkimpy) by the end-to-end tests.
//!
//! Written here rather than with mail-auth: 0.15, the first without the
//! relaxed body-hash bug (bodies ending in lines of only white space), needs
//! a newer rustc (through mail-parser 1.x); the versions that build here have
//! the bug and pull in a second DNS resolver only to sign.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// The header fields signed when present (From always).
const SIGNED: &[&str] = &[
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A signing key for one domain and selector.
pub struct Signer {
    pub domain: String,
    pub selector: String,
    key: Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}, {})", self.domain, self.selector)
    }
}

impl Signer {
    /// A key from PEM: PKCS#8 (RSA or Ed25519) or PKCS#1 (RSA).
    pub fn from_pem(domain: &str, selector: &str, pem: &[u8]) -> Result<Signer, String> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a PEM private key: {e}"))?;
        let key = match &der {
            PrivateKeyDer::Pkcs1(k) => {
                Key::Rsa(RsaKeyPair::from_der(k.secret_pkcs1_der()).map_err(|e| format!("RSA key: {e}"))?)
            }
            PrivateKeyDer::Pkcs8(k) => match RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()) {
                Ok(rsa) => Key::Rsa(rsa),
                Err(_) => Key::Ed25519(
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(k.secret_pkcs8_der())
                        .map_err(|e| format!("neither an RSA nor an Ed25519 key: {e}"))?,
                ),
            },
            _ => return Err("only RSA and Ed25519 keys sign DKIM".into()),
        };
        if let Key::Rsa(k) = &key
            && k.public().modulus_len() < 128
        {
            return Err("an RSA key for DKIM has at least 1024 bits".into());
        }
        Ok(Signer { domain: domain.to_ascii_lowercase(), selector: selector.to_string(), key })
    }

    fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// `raw` with a `DKIM-Signature:` field on top, signed at `now_s`
    /// (seconds since the epoch).
    pub fn sign(&self, raw: &[u8], now_s: i64) -> Result<Vec<u8>, String> {
        let (head, body) = split(raw);
        let fields = crate::fields(head);
        let mut names = Vec::new();
        let mut signed_data = Vec::new();
        for name in SIGNED {
            if let Some((_, field)) = fields.iter().rev().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                names.push(*name);
                signed_data.extend_from_slice(&relaxed_header(field));
                signed_data.extend_from_slice(b"\r\n");
            }
        }
        if !names.contains(&"from") {
            return Err("no From field to sign".into());
        }
        let bh = B64.encode(Sha256::digest(relaxed_body(body)));
        let value = format!(
            " v=1; a={}; c=relaxed/relaxed; d={}; s={}; t={now_s};\r\n\th={};\r\n\tbh={bh};\r\n\tb=",
            self.algorithm(),
            self.domain,
            self.selector,
            names.join(":"),
        );
        let field = format!("DKIM-Signature:{value}");
        signed_data.extend_from_slice(&relaxed_header(field.as_bytes()));
        let signature = match &self.key {
            Key::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), &signed_data, &mut sig)
                    .map_err(|_| "RSA signing failed".to_string())?;
                sig
            }
            Key::Ed25519(k) => k.sign(&Sha256::digest(&signed_data)).as_ref().to_vec(),
        };
        let b = B64.encode(signature);
        let folded: Vec<&str> = b.as_bytes().chunks(72).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
        let mut out = Vec::with_capacity(raw.len() + 600);
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(folded.join("\r\n\t ").as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(raw);
        Ok(out)
    }
}

/// The header block (with its last line end) and the body (after the
/// blank line).
fn split(raw: &[u8]) -> (&[u8], &[u8]) {
    if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        return (&raw[..p + 2], &raw[p + 4..]);
    }
    if let Some(p) = raw.windows(2).position(|w| w == b"\n\n") {
        return (&raw[..p + 1], &raw[p + 2..]);
    }
    (raw, b"")
}

/// A header field in relaxed form, without its line end: the name in lower
/// case, unfolded, runs of white space as one space, none around the colon
/// or at the end. On bytes: an 8-bit header (raw Shift_JIS) is signed as it
/// goes out.
fn relaxed_header(field: &[u8]) -> Vec<u8> {
    let colon = field.iter().position(|b| *b == b':').unwrap_or(field.len());
    let name = field[..colon].trim_ascii().to_ascii_lowercase();
    let value = field.get(colon + 1..).unwrap_or_default();
    let mut out = name;
    out.push(b':');
    let start = out.len();
    let mut space = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => continue,
            b' ' | b'\t' => space = true,
            _ => {
                if space && out.len() > start {
                    out.push(b' ');
                }
                space = false;
                out.push(b);
            }
        }
    }
    out
}

/// The body in relaxed form: white space at line ends gone, runs of it as
/// one space, empty lines at the end gone, CRLF line ends.
pub fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let text = body.strip_suffix(b"\n").unwrap_or(body);
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut out = Vec::with_capacity(line.len());
        let mut space = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                space = true;
                continue;
            }
            if space {
                out.push(b' ');
            }
            space = false;
            out.push(b);
        }
        lines.push(out);
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut out = Vec::with_capacity(body.len());
    for l in lines {
        out.extend_from_slice(&l);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A new key, as PEM (PKCS#8) and the `p=` value of its DNS record.
pub fn ed25519_keygen() -> Result<(String, String), String> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|e| e.to_string())?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| e.to_string())?;
    let public = B64.encode(ring::signature::KeyPair::public_key(&pair).as_ref());
    Ok((pem("PRIVATE KEY", pkcs8.as_ref()), public))
}

/// DER as PEM.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The `d=` of each DKIM signature already on a message (made upstream).
pub fn signatures(raw: &[u8]) -> Vec<String> {
    let (head, _) = split(raw);
    crate::fields(head)
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("DKIM-Signature"))
        .filter_map(|(_, f)| {
            let text = String::from_utf8_lossy(&relaxed_header(f)).into_owned();
            text.split(';').find_map(|tag| tag.trim().strip_prefix("d=").map(|d| d.trim().to_ascii_lowercase()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::PrivatePkcs8KeyDer;

    #[test]
    fn relaxed_forms_follow_the_rfc_examples() {
        // RFC 6376 3.4.5.
        assert_eq!(relaxed_header(b"A: X\r\n"), b"a:X");
        assert_eq!(relaxed_header(b"B : Y\t\r\n\tZ  \r\n"), b"b:Y Z");
        assert_eq!(
            relaxed_header(b"Subject: \x8c\xa9\x90\xcf\r\n"),
            b"subject:\x8c\xa9\x90\xcf",
            "8-bit bytes as they are"
        );
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"x\r\n   \r\n\t\r\n"), b"x\r\n", "lines of only white space at the end go");
        assert_eq!(relaxed_body(b"a\nb"), b"a\r\nb\r\n");
    }

    #[test]
    fn a_signed_message_carries_one_signature_of_its_domain() {
        let (pem, public) = ed25519_keygen().unwrap();
        assert!(PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).is_ok());
        assert_eq!(B64.decode(&public).unwrap().len(), 32);
        let s = Signer::from_pem("Example.com", "tomare1", pem.as_bytes()).unwrap();
        let raw = b"From: a@example.com\r\nTo: b@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let out = s.sign(raw, 1_700_000_000).unwrap();
        assert!(out.ends_with(raw), "the message follows as it was");
        assert_eq!(signatures(&out), ["example.com"]);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com; s=tomare1;")
        );
        assert!(text.contains("h=from:to:subject;"), "{text}");
        assert!(s.sign(b"To: b@x.test\r\n\r\nx\r\n", 0).is_err(), "nothing to sign without From");
        assert!(Signer::from_pem("x", "y", b"not a key").is_err());
    }
}

/// Every configured key; the one for a message is chosen by the domain of
/// its From address (that domain or a parent: DMARC's relaxed alignment).
#[derive(Debug, Default)]
pub struct Signers(Vec<Signer>);

impl Signers {
    pub fn new(keys: Vec<Signer>) -> Signers {
        Signers(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key for a message's From domain (the longest domain that fits).
    pub fn for_message(&self, raw: &[u8]) -> Option<&Signer> {
        if self.0.is_empty() {
            return None;
        }
        let from = mail_parser::MessageParser::default().parse_headers(raw)?;
        let address = from.from()?.first()?.address()?.to_ascii_lowercase();
        let domain = address.rsplit_once('@')?.1.to_string();
        self.0
            .iter()
            .filter(|s| domain == s.domain || domain.ends_with(&format!(".{}", s.domain)))
            .max_by_key(|s| s.domain.len())
    }

    /// `raw` signed for its From domain; None when no key fits; an error
    /// when signing failed (the caller says so and sends it as it is).
    pub fn sign(&self, raw: &[u8], now_s: i64) -> Result<Option<Vec<u8>>, String> {
        match self.for_message(raw) {
            Some(signer) => signer.sign(raw, now_s).map(Some),
            None => Ok(None),
        }
    }
}
