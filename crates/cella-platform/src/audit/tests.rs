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

fn broken_at(entries: &[AuditEntry]) -> (u64, EntryBreak) {
    match verify_chain(entries, &[], &policy()) {
        Err(ChainError::Entry { seq, reason }) => (seq, reason),
        other => panic!("expected a break, got {other:?}"),
    }
}

#[test]
fn an_intact_chain_verifies_and_each_tampering_is_caught_at_its_entry() {
    let good = chain(5);
    let ok = verify_chain(&good, &[], &policy()).unwrap();
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
