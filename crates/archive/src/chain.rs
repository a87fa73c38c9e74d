//! Tamper evidence: every archived record carries a hash chained to the one
//! before it, and checkpoints sign (with Ed25519) the chain's head. Changing,
//! removing or reordering a record, or a blob it names, breaks the chain at
//! that record; rewriting the whole chain after it breaks a signature.

use crate::blobs::{BlobLoc, Blobs};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use std::collections::{HashMap, HashSet};
use tomare_store::{ArchiveRecord, CheckpointRow, chain_link, sha256_hex};

pub use tomare_store::ArchiveRecord as Record;
pub use tomare_store::GENESIS;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

pub fn checkpoint(key: &SigningKey, head: &ArchiveRecord, at: i64) -> CheckpointRow {
    let signature = key.sign(format!("{}:{}", head.seq, head.hash).as_bytes());
    CheckpointRow { seq: head.seq, hash: head.hash.clone(), signature: hex(&signature.to_bytes()), at }
}

/// A new signing key (kept in the data directory by the caller).
pub fn new_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the OS has a source of randomness");
    SigningKey::from_bytes(&seed)
}

pub fn public_hex(key: &VerifyingKey) -> String {
    hex(key.as_bytes())
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first record that does not check out.
    pub seq: i64,
    pub reason: String,
}

/// Checks records one at a time, in order (so an archive of millions is
/// walked in pages): each must follow the one before, hash to what it
/// says, carry the meta its hash names, and name a blob that is there and
/// intact. A record whose meta retention removed must be named by a later
/// `purge` record. At the end each checkpoint must be signed by the key and
/// match the record at its place.
pub struct Verifier<'a> {
    blobs: &'a Blobs,
    prev_hash: String,
    expected: i64,
    heads: HashMap<i64, String>,
    purged_unclaimed: Vec<i64>,
    claimed: HashSet<i64>,
    /// Blobs already read and found intact (received and final records of
    /// an unchanged message share one).
    good_blobs: HashSet<String>,
}

impl<'a> Verifier<'a> {
    pub fn new(blobs: &'a Blobs) -> Verifier<'a> {
        Verifier {
            blobs,
            prev_hash: tomare_store::GENESIS.to_string(),
            expected: 1,
            heads: HashMap::new(),
            purged_unclaimed: Vec::new(),
            claimed: HashSet::new(),
            good_blobs: HashSet::new(),
        }
    }

    /// Checks the next record; `loc` is where its blob is said to be.
    pub fn record(&mut self, r: &ArchiveRecord, loc: Option<&BlobLoc>) -> Result<(), Broken> {
        let bad = |reason: String| Broken { seq: r.seq, reason };
        if r.seq != self.expected {
            return Err(Broken {
                seq: self.expected,
                reason: format!("record {} is missing or out of order (found {})", self.expected, r.seq),
            });
        }
        if chain_link(&self.prev_hash, r.seq, &r.kind, &r.message_id, r.at, &r.blob, &r.meta_hash) != r.hash {
            return Err(bad("the record does not match its hash".into()));
        }
        match &r.meta {
            Some(meta) => {
                if sha256_hex(meta.as_bytes()) != r.meta_hash {
                    return Err(bad("the record's details were changed".into()));
                }
                if r.kind == crate::meta::RecordKind::Purge.as_str() {
                    self.claimed.extend(purged_seqs(meta));
                }
                if !r.blob.is_empty() && !self.good_blobs.contains(&r.blob) {
                    let loc = loc.filter(|l| l.hash == r.blob).ok_or_else(|| bad("its message is missing".into()))?;
                    self.blobs.read(loc).map_err(|e| bad(format!("its message: {e}")))?;
                    self.good_blobs.insert(r.blob.clone());
                }
            }
            None => self.purged_unclaimed.push(r.seq),
        }
        self.heads.insert(r.seq, r.hash.clone());
        self.prev_hash = r.hash.clone();
        self.expected += 1;
        Ok(())
    }

    /// Returns how many records checked out.
    pub fn finish(self, checkpoints: &[CheckpointRow], key: &VerifyingKey) -> Result<i64, Broken> {
        if let Some(seq) = self.purged_unclaimed.iter().find(|s| !self.claimed.contains(s)) {
            return Err(Broken {
                seq: *seq,
                reason: "its details are gone but no retention record removed them".into(),
            });
        }
        for c in checkpoints {
            let signed = unhex(&c.signature)
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .map(|b| Signature::from_bytes(&b))
                .is_some_and(|sig| key.verify(format!("{}:{}", c.seq, c.hash).as_bytes(), &sig).is_ok());
            if !signed {
                return Err(Broken { seq: c.seq, reason: format!("checkpoint at {} has a bad signature", c.seq) });
            }
            match self.heads.get(&c.seq) {
                Some(h) if *h == c.hash => {}
                Some(_) => {
                    return Err(Broken { seq: c.seq, reason: "the chain differs from its signed checkpoint".into() });
                }
                None => {
                    return Err(Broken { seq: c.seq, reason: "records covered by a checkpoint are missing".into() });
                }
            }
        }
        Ok(self.expected - 1)
    }
}

fn purged_seqs(meta: &str) -> Vec<i64> {
    #[derive(serde::Deserialize)]
    struct Purge {
        #[serde(default)]
        purged: Vec<i64>,
    }
    serde_json::from_str::<Purge>(meta).map(|p| p.purged).unwrap_or_default()
}

/// Every record and checkpoint at once (tests; small archives).
pub fn verify(
    records: &[ArchiveRecord],
    checkpoints: &[CheckpointRow],
    blobs: &Blobs,
    locs: &HashMap<String, BlobLoc>,
    key: &VerifyingKey,
) -> Result<i64, Broken> {
    let mut v = Verifier::new(blobs);
    for r in records {
        v.record(r, locs.get(&r.blob))?;
    }
    v.finish(checkpoints, key)
}

/// The next record after `prev` (tests build chains without a database).
#[cfg(test)]
fn append(prev: Option<&ArchiveRecord>, blob: String, meta: String) -> ArchiveRecord {
    let (seq, prev_hash) = match prev {
        Some(r) => (r.seq + 1, r.hash.as_str()),
        None => (1, tomare_store::GENESIS),
    };
    let meta_hash = sha256_hex(meta.as_bytes());
    let id = format!("m{seq}");
    let hash = chain_link(prev_hash, seq, "received", &id, 1000 * seq, &blob, &meta_hash);
    ArchiveRecord {
        seq,
        message_id: id,
        org_id: 1,
        kind: "received".into(),
        at: 1000 * seq,
        blob,
        meta: Some(meta),
        meta_hash,
        hash,
        purged_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Setup {
        _dir: tempfile::TempDir,
        blobs: Blobs,
        locs: HashMap<String, BlobLoc>,
        key: SigningKey,
        records: Vec<Record>,
        checkpoints: Vec<CheckpointRow>,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let key = new_key();
        let mut records: Vec<Record> = Vec::new();
        let mut checkpoints = Vec::new();
        let mut locs = HashMap::new();
        for n in 1..=6 {
            let text = format!("Subject: message {n}\r\n\r\n本文 {n}\r\n");
            let loc = blobs.write_pack(&[(sha256_hex(text.as_bytes()), text.as_bytes())]).unwrap().remove(0);
            let blob = loc.hash.clone();
            locs.insert(blob.clone(), loc);
            let r = append(records.last(), blob, format!("{{\"state\":\"delivered\",\"n\":{n}}}"));
            records.push(r);
            if n % 3 == 0 {
                checkpoints.push(checkpoint(&key, records.last().unwrap(), 0));
            }
        }
        Setup { _dir: dir, blobs, locs, key, records, checkpoints }
    }

    fn check(s: &Setup, records: Vec<Record>) -> Result<i64, Broken> {
        verify(&records, &s.checkpoints, &s.blobs, &s.locs, &s.key.verifying_key())
    }

    #[test]
    fn an_untouched_archive_verifies() {
        let s = setup();
        assert_eq!(check(&s, s.records.clone()), Ok(6));
    }

    #[test]
    fn a_changed_blob_is_found() {
        let s = setup();
        let path = s.blobs.pack_path(&s.locs[&s.records[3].blob].pack);
        std::fs::write(&path, zstd::bulk::compress(b"Subject: forged\r\n\r\n", 3).unwrap()).unwrap();
        let e = check(&s, s.records.clone()).unwrap_err();
        assert_eq!(e.seq, 4, "{e:?}");
    }

    #[test]
    fn a_changed_record_a_removed_one_and_a_reordering_are_found() {
        let s = setup();
        let mut changed = s.records.clone();
        changed[1].meta = Some("{\"state\":\"cancelled\",\"n\":2}".into());
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
            let meta = if r.seq == 2 { "{\"state\":\"forged\"}".to_string() } else { r.meta.clone().unwrap() };
            forged.push(append(forged.last(), r.blob.clone(), meta));
        }
        let e = check(&s, forged).unwrap_err();
        assert_eq!(e.seq, 3, "{e:?}");
        assert!(e.reason.contains("checkpoint"));
        // A checkpoint signed by another key.
        let other = new_key();
        let mut s2 = setup();
        s2.checkpoints[0] = checkpoint(&other, &s2.records[2], 0);
        let e = verify(&s2.records, &s2.checkpoints, &s2.blobs, &s2.locs, &s2.key.verifying_key()).unwrap_err();
        assert!(e.reason.contains("signature"), "{e:?}");
    }
}
