use serde::{Deserialize, Serialize};
use std::fmt;

/// A queue id: 48 bits of milliseconds and 80 random bits in Crockford
/// base32 (26 characters), so ids sort by arrival and are safe as file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(String);

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl MessageId {
    pub fn generate(now_ms: i64) -> Self {
        let mut random = [0u8; 10];
        // getrandom only fails when the OS has no entropy source at all; a
        // time-derived fallback still gives unique ids within this process.
        if getrandom::fill(&mut random).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            random.copy_from_slice(&nanos.to_le_bytes()[..10]);
        }
        let mut value: u128 = (now_ms as u128 & 0xFFFF_FFFF_FFFF) << 80;
        for (i, b) in random.iter().enumerate() {
            value |= (*b as u128) << (8 * (9 - i));
        }
        let mut out = [0u8; 26];
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(value & 31) as usize];
            value >>= 5;
        }
        MessageId(String::from_utf8_lossy(&out).into_owned())
    }

    /// Accepts only well-formed ids, so an id from a command line can never
    /// name a path outside the spool.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_uppercase();
        (s.len() == 26 && s.bytes().all(|b| ALPHABET.contains(&b))).then_some(MessageId(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_round_trip() {
        let a = MessageId::generate(1_000);
        let b = MessageId::generate(2_000);
        assert!(a < b);
        assert_ne!(MessageId::generate(5), MessageId::generate(5));
        assert_eq!(MessageId::parse(&a.as_str().to_lowercase()), Some(a));
        assert_eq!(MessageId::parse("../../etc/passwd"), None);
    }
}
