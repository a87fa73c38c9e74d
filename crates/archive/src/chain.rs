//! Tamper evidence: every archived record carries a hash chained to the one
//! before it, and checkpoints sign (with Ed25519) the chain's head. Changing,
//! removing or reordering a record, or a blob it names, breaks the chain at
//! that record; rewriting the whole chain after it breaks a signature.

use crate::blobs::{Blobs, sha256_hex};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// One archived record: a message's blob and what is known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    /// SHA-256 of the message bytes (the blob's name).
    pub blob: String,
    /// Everything else about the message, as canonical JSON.
    pub meta: String,
    /// `hash(prev, seq, blob, meta)`.
    pub hash: String,
}

/// The signed head of the chain at `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    /// Ed25519 signature over `"{seq}:{hash}"`, hex.
    pub signature: String,
}

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn link(prev: &str, seq: u64, blob: &str, meta: &str) -> String {
    let mut input = Vec::with_capacity(prev.len() + blob.len() + meta.len() + 32);
    for part in [prev.as_bytes(), seq.to_string().as_bytes(), blob.as_bytes(), meta.as_bytes()] {
        input.extend_from_slice(&(part.len() as u64).to_be_bytes());
        input.extend_from_slice(part);
    }
    sha256_hex(&input)
}

/// The next record after `prev` (None for the first).
pub fn append(prev: Option<&Record>, blob: String, meta: String) -> Record {
    let (seq, prev_hash) = match prev {
        Some(r) => (r.seq + 1, r.hash.as_str()),
        None => (1, GENESIS),
    };
    let hash = link(prev_hash, seq, &blob, &meta);
    Record { seq, blob, meta, hash }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

pub fn checkpoint(key: &SigningKey, head: &Record) -> Checkpoint {
    let signature = key.sign(format!("{}:{}", head.seq, head.hash).as_bytes());
    Checkpoint { seq: head.seq, hash: head.hash.clone(), signature: hex(&signature.to_bytes()) }
}

/// A new signing key (kept in the data directory by the caller).
pub fn new_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the OS has a source of randomness");
    SigningKey::from_bytes(&seed)
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first record that does not check out (0: a checkpoint).
    pub seq: u64,
    pub reason: String,
}

/// Walks the records in order: each must follow the one before, hash to
/// what it says, and name a blob that is there and intact; each checkpoint
/// must be signed by `key` and match the record at its place.
pub fn verify(
    records: impl IntoIterator<Item = Record>,
    checkpoints: &[Checkpoint],
    blobs: &Blobs,
    key: &VerifyingKey,
) -> Result<u64, Broken> {
    let mut prev_hash = GENESIS.to_string();
    let mut expected_seq = 1;
    let mut heads = std::collections::HashMap::new();
    for r in records {
        let bad = |reason: String| Broken { seq: r.seq, reason };
        if r.seq != expected_seq {
            return Err(Broken {
                seq: expected_seq,
                reason: format!("record {expected_seq} is missing or out of order (found {})", r.seq),
            });
        }
        if link(&prev_hash, r.seq, &r.blob, &r.meta) != r.hash {
            return Err(bad("the record's content does not match its hash".into()));
        }
        if let Err(e) = blobs.get(&r.blob) {
            return Err(bad(format!("its message: {e}")));
        }
        heads.insert(r.seq, r.hash.clone());
        prev_hash = r.hash;
        expected_seq += 1;
    }
    for c in checkpoints {
        let signed = unhex(&c.signature)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .is_some_and(|sig| key.verify(format!("{}:{}", c.seq, c.hash).as_bytes(), &sig).is_ok());
        if !signed {
            return Err(Broken { seq: c.seq, reason: format!("checkpoint at {} has a bad signature", c.seq) });
        }
        match heads.get(&c.seq) {
            Some(h) if *h == c.hash => {}
            Some(_) => {
                return Err(Broken { seq: c.seq, reason: "the chain differs from its signed checkpoint".into() });
            }
            None => return Err(Broken { seq: c.seq, reason: "records covered by a checkpoint are missing".into() }),
        }
    }
    Ok(expected_seq - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Setup {
        _dir: tempfile::TempDir,
        blobs: Blobs,
        key: SigningKey,
        records: Vec<Record>,
        checkpoints: Vec<Checkpoint>,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let key = new_key();
        let mut records: Vec<Record> = Vec::new();
        let mut checkpoints = Vec::new();
        for n in 1..=6 {
            let blob = blobs.put(format!("Subject: message {n}\r\n\r\n本文 {n}\r\n").as_bytes()).unwrap();
            let r = append(records.last(), blob, format!("{{\"state\":\"delivered\",\"n\":{n}}}"));
            records.push(r);
            if n % 3 == 0 {
                checkpoints.push(checkpoint(&key, records.last().unwrap()));
            }
        }
        Setup { _dir: dir, blobs, key, records, checkpoints }
    }

    fn check(s: &Setup, records: Vec<Record>) -> Result<u64, Broken> {
        verify(records, &s.checkpoints, &s.blobs, &s.key.verifying_key())
    }

    #[test]
    fn an_untouched_archive_verifies() {
        let s = setup();
        assert_eq!(check(&s, s.records.clone()), Ok(6));
    }

    #[test]
    fn a_changed_blob_is_found() {
        let s = setup();
        let path = s.blobs.path(&s.records[3].blob);
        std::fs::write(&path, zstd::bulk::compress(b"Subject: forged\r\n\r\n", 3).unwrap()).unwrap();
        let e = check(&s, s.records.clone()).unwrap_err();
        assert_eq!(e.seq, 4, "{e:?}");
    }

    #[test]
    fn a_changed_record_a_removed_one_and_a_reordering_are_found() {
        let s = setup();
        let mut changed = s.records.clone();
        changed[1].meta = "{\"state\":\"cancelled\",\"n\":2}".into();
        assert_eq!(check(&s, changed).unwrap_err().seq, 2);

        let mut removed = s.records.clone();
        removed.remove(2);
        assert_eq!(check(&s, removed).unwrap_err().seq, 3);

        let mut swapped = s.records.clone();
        swapped.swap(4, 5);
        assert_eq!(check(&s, swapped).unwrap_err().seq, 5);
    }

    #[test]
    fn a_rewritten_chain_fails_its_signed_checkpoint() {
        let s = setup();
        // Forge record 2 and recompute every hash after it: the chain is
        // consistent again, but no longer what was signed.
        let mut forged: Vec<Record> = Vec::new();
        for r in &s.records {
            let meta = if r.seq == 2 { "{\"state\":\"forged\"}".to_string() } else { r.meta.clone() };
            forged.push(append(forged.last(), r.blob.clone(), meta));
        }
        let e = check(&s, forged).unwrap_err();
        assert_eq!(e.seq, 3, "{e:?}");
        assert!(e.reason.contains("checkpoint"));
        // A checkpoint signed by another key.
        let other = new_key();
        let mut s2 = setup();
        s2.checkpoints[0] = checkpoint(&other, &s2.records[2]);
        let e = verify(s2.records.clone(), &s2.checkpoints, &s2.blobs, &s2.key.verifying_key()).unwrap_err();
        assert!(e.reason.contains("signature"), "{e:?}");
    }
}
