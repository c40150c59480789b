use super::chain::{entry_hash, verify_chain};
use super::*;

/// A chain of `n` entries after genesis, linked as the node links them.
fn chain(n: u64) -> Vec<AuditEntry> {
    let mut prev = GENESIS_PREV;
    (1..=n + 1)
        .map(|seq| {
            let mut e = AuditEntry {
                seq,
                at_ms: 1_000 + seq,
                actor: if seq == 1 {
                    "node".into()
                } else {
                    "alice".into()
                },
                action: if seq == 1 {
                    AuditAction::Genesis
                } else {
                    AuditAction::Login
                },
                objects: vec![format!("object-{seq}")],
                parties: vec!["alice".into()],
                task_digest: None,
                outcome: Outcome::Succeeded,
                salt: Digest::of(&seq.to_be_bytes()),
                prev_hash: prev,
                hash: GENESIS_PREV,
            };
            e.hash = entry_hash(&e);
            prev = e.hash;
            e
        })
        .collect()
}

fn policy() -> cella_attest::Policy {
    cella_attest::Policy::from_toml_str(
        "version = 1\n[roles.node]\nmax_evidence_age_secs = 60\nallow_debug = false\n\
         allow_simulation = false\nmr_enclave = [\"0000000000000000000000000000000000000000000000000000000000000000\"]\naccepted_tcb_statuses = [\"UpToDate\"]\n",
    )
    .unwrap()
}

fn full(entries: &[AuditEntry]) -> Vec<ExportedEntry> {
    entries.iter().cloned().map(ExportedEntry::Full).collect()
}

fn broken_at(entries: &[AuditEntry]) -> (u64, EntryBreak) {
    match verify_chain(&full(entries), &[], &policy()) {
        Err(ChainError::Entry { seq, reason }) => (seq, reason),
        other => panic!("expected a break, got {other:?}"),
    }
}

#[test]
fn an_intact_chain_verifies_and_each_tampering_is_caught_at_its_entry() {
    let good = chain(5);
    let ok = verify_chain(&full(&good), &[], &policy()).unwrap();
    assert_eq!((ok.entries, ok.sealed_through), (6, 0));

    let mut edited = good.clone();
    edited[3].actor = "mallory".into();
    assert_eq!(broken_at(&edited), (4, EntryBreak::Hash));

    // Edited with its hash recomputed: the next entry's link breaks.
    edited[3].hash = entry_hash(&edited[3]);
    assert_eq!(broken_at(&edited), (5, EntryBreak::PrevHash));

    let mut removed = good.clone();
    removed.remove(2);
    assert_eq!(
        broken_at(&removed),
        (
            3,
            EntryBreak::Sequence {
                expected: 3,
                found: 4
            }
        )
    );

    let mut reordered = good.clone();
    reordered.swap(2, 3);
    assert_eq!(
        broken_at(&reordered),
        (
            3,
            EntryBreak::Sequence {
                expected: 3,
                found: 4
            }
        )
    );

    assert_eq!(broken_at(&good[1..]), (1, EntryBreak::NoGenesis));
}

#[test]
fn action_names_are_stable_and_round_trip() {
    for a in AuditAction::ALL {
        assert_eq!(a.name().parse::<AuditAction>().unwrap(), *a);
        let json = serde_json::to_string(a).unwrap();
        assert_eq!(json, format!("\"{}\"", a.name()));
    }
    assert_eq!(AuditAction::ApproveTask.name(), "approve_task");
    assert!("approve".parse::<AuditAction>().is_err());
}

fn redacted(e: &AuditEntry) -> ExportedEntry {
    ExportedEntry::Redacted(RedactedEntry {
        seq: e.seq,
        body_hash: super::chain::body_hash(e),
        prev_hash: e.prev_hash,
        hash: e.hash,
    })
}

#[test]
fn redacted_entries_keep_the_chain_checkable_and_hide_nothing_forgeable() {
    let good = chain(4);
    let mut mixed = full(&good);
    mixed[2] = redacted(&good[2]);
    mixed[0] = redacted(&good[0]);
    assert_eq!(verify_chain(&mixed, &[], &policy()).unwrap().entries, 5);

    // A visible entry edited, its hash recomputed, and the redacted link after it
    // pointed at the new hash: the redacted link's own hash no longer matches.
    let mut edited = good.clone();
    edited[1].actor = "mallory".into();
    edited[1].hash = entry_hash(&edited[1]);
    let mut forged = full(&edited);
    let ExportedEntry::Redacted(mut link) = redacted(&good[2]) else {
        unreachable!()
    };
    link.prev_hash = edited[1].hash;
    forged[2] = ExportedEntry::Redacted(link);
    match verify_chain(&forged, &[], &policy()) {
        Err(ChainError::Entry { seq, reason }) => assert_eq!((seq, reason), (3, EntryBreak::Hash)),
        other => panic!("expected a break at 3, got {other:?}"),
    }

    // The same contents under another salt have another body hash.
    let mut resalted = good[2].clone();
    resalted.salt = Digest::of(b"other");
    assert_ne!(
        super::chain::body_hash(&resalted),
        super::chain::body_hash(&good[2])
    );
}

/// The example of `docs/formats/audit.md`, field by field as the document lists it.
fn documented_entry() -> AuditEntry {
    let mut e = AuditEntry {
        seq: 2,
        at_ms: 1_700_000_000_000,
        actor: "alice".into(),
        action: AuditAction::ApproveTask,
        objects: vec![
            "task-00000000-0000-4000-8000-000000000001".into(),
            "function-00000000-0000-4000-8000-000000000002".into(),
        ],
        parties: vec!["alice".into(), "bob".into()],
        task_digest: Some(Digest::from_bytes([0x11; 32])),
        outcome: Outcome::Succeeded,
        salt: Digest::from_bytes([0x22; 32]),
        prev_hash: Digest::from_bytes([0x33; 32]),
        hash: GENESIS_PREV,
    };
    e.hash = entry_hash(&e);
    e
}

/// The hex value the document gives for `name` (a line `name = <hex>`, continued on
/// the lines after it that are hex alone).
fn documented(name: &str) -> String {
    const DOC: &str = include_str!("../../../../docs/formats/audit.md");
    let mut lines = DOC
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{name} = ")));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("docs/formats/audit.md gives no {name}"));
    let mut hex = first[name.len() + 3..].trim().to_owned();
    for l in lines {
        let l = l.trim();
        if l.is_empty() || !l.chars().all(|c| c.is_ascii_hexdigit()) {
            break;
        }
        hex.push_str(l);
    }
    hex
}

#[test]
fn the_documented_test_vectors_are_what_the_code_computes() {
    let e = documented_entry();
    assert_eq!(
        documented("entry_bytes"),
        hex::encode(super::chain::entry_bytes(&e))
    );
    assert_eq!(
        documented("body_hash"),
        super::chain::body_hash(&e).to_hex()
    );
    let link = super::chain::link_bytes(e.seq, &super::chain::body_hash(&e), &e.prev_hash);
    assert_eq!(documented("link_bytes"), hex::encode(link));
    assert_eq!(documented("hash"), e.hash.to_hex());
    let message = super::chain::checkpoint_message(1, e.seq, &e.hash, 1_700_000_000_500);
    assert_eq!(documented("checkpoint_message"), hex::encode(message));
}
