//! Auditor-signed policies: k of n, refused when signatures are missing, invalid or too
//! few; a client that cannot load its policy never connects.

use std::sync::Arc;

use cella_attest::Verifier;
use cella_attest::auditors::{
    AuditError, PolicySignatures, TrustRoot, load_signed_policy, sign_policy, verify_signed_policy,
};
use cella_attest::policy::{Provenance, roles};
use cella_attest::tls::AttestedServerVerifier;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::common::*;

struct Board {
    keys: Vec<Ed25519KeyPair>,
    root: TrustRoot,
}

/// Three auditors, two required.
fn board() -> Board {
    let keys: Vec<_> = (0..3)
        .map(|_| {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
        })
        .collect();
    let mut text = String::from("threshold = 2\n");
    for (name, key) in ["alice", "bob", "carol"].iter().zip(&keys) {
        text.push_str(&format!(
            "[[auditors]]\nname = \"{name}\"\npublic_key = \"{}\"\n",
            hex::encode(key.public_key().as_ref())
        ));
    }
    Board {
        keys,
        root: TrustRoot::from_toml_str(&text).unwrap(),
    }
}

fn signatures(policy: &[u8], keys: &[&Ed25519KeyPair]) -> PolicySignatures {
    PolicySignatures {
        signatures: keys.iter().map(|k| sign_policy(policy, k)).collect(),
    }
}

/// What a client does: load the signed policy, then attest the node with it.
async fn client_connects(
    node: &SimNode,
    policy: &[u8],
    sigs: Option<&PolicySignatures>,
    root: &TrustRoot,
) -> Result<Outcome, AuditError> {
    let policy = verify_signed_policy(policy, sigs, root)?;
    let verifier = Arc::new(AttestedServerVerifier::new(
        Arc::new(Verifier::new(policy)),
        roles::NODE,
    ));
    Ok(make_pair(node.identity(), verifier, None, None).await)
}

#[tokio::test]
async fn two_of_three_signed_policy_is_used() {
    let node = SimNode::new();
    let board = board();
    let policy = sim_policy_text(roles::NODE, node.key(), node.measurement, "");
    let sigs = signatures(policy.as_bytes(), &[&board.keys[0], &board.keys[2]]);
    let loaded = verify_signed_policy(policy.as_bytes(), Some(&sigs), &board.root).unwrap();
    assert_eq!(
        loaded.provenance(),
        &Provenance::Signed {
            auditors: vec!["alice".into(), "carol".into()],
            threshold: 2
        }
    );
    let outcome = client_connects(&node, policy.as_bytes(), Some(&sigs), &board.root)
        .await
        .unwrap();
    outcome.client.unwrap();
}

#[tokio::test]
async fn missing_signatures_refuse_the_policy() {
    let node = SimNode::new();
    let board = board();
    let policy = sim_policy_text(roles::NODE, node.key(), node.measurement, "");
    for sigs in [None, Some(PolicySignatures::default())] {
        let err = client_connects(&node, policy.as_bytes(), sigs.as_ref(), &board.root)
            .await
            .err()
            .expect("no connection without signatures");
        assert!(matches!(
            err,
            AuditError::SignaturesMissing {
                threshold: 2,
                auditors: 3
            }
        ));
        assert!(
            err.to_string().contains("carries no auditor signatures"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn invalid_signature_refuses_the_policy() {
    let node = SimNode::new();
    let board = board();
    let policy = sim_policy_text(roles::NODE, node.key(), node.measurement, "");
    // Signed, then altered (simulation debug allowed after the auditors read it).
    let sigs = signatures(policy.as_bytes(), &[&board.keys[0], &board.keys[1]]);
    let altered = format!("{policy}allow_debug = true\n");
    let err = client_connects(&node, altered.as_bytes(), Some(&sigs), &board.root)
        .await
        .err()
        .expect("no connection with an altered policy");
    assert!(matches!(err, AuditError::InvalidSignature { ref auditor } if auditor == "alice"));
    assert!(
        err.to_string()
            .contains("signature over the policy is invalid"),
        "{err}"
    );

    // A garbled signature string is invalid too.
    let mut sigs = signatures(policy.as_bytes(), &[&board.keys[0], &board.keys[1]]);
    sigs.signatures[1].signature = "00".repeat(64);
    let err = verify_signed_policy(policy.as_bytes(), Some(&sigs), &board.root).unwrap_err();
    assert!(matches!(err, AuditError::InvalidSignature { ref auditor } if auditor == "bob"));
}

#[tokio::test]
async fn signatures_below_threshold_refuse_the_policy() {
    let node = SimNode::new();
    let board = board();
    let policy = sim_policy_text(roles::NODE, node.key(), node.measurement, "");
    // One auditor, signing twice; and a stranger whose signature does not count.
    let stranger = {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
    };
    let sigs = signatures(
        policy.as_bytes(),
        &[&board.keys[1], &board.keys[1], &stranger],
    );
    let err = client_connects(&node, policy.as_bytes(), Some(&sigs), &board.root)
        .await
        .err()
        .expect("no connection below threshold");
    assert!(
        matches!(err, AuditError::BelowThreshold { valid: 1, threshold: 2, ref signed_by } if signed_by == &["bob"]),
        "{err:?}"
    );
    assert!(err.to_string().contains("2 required"), "{err}");
}

#[test]
fn trust_roots_are_validated() {
    let key = "11".repeat(32);
    for (text, needle) in [
        (
            format!("threshold = 0\n[[auditors]]\nname = \"a\"\npublic_key = \"{key}\"\n"),
            "threshold 0",
        ),
        (
            format!("threshold = 2\n[[auditors]]\nname = \"a\"\npublic_key = \"{key}\"\n"),
            "threshold 2",
        ),
        (
            format!(
                "threshold = 1\n[[auditors]]\nname = \"a\"\npublic_key = \"{key}\"\n\
                 [[auditors]]\nname = \"b\"\npublic_key = \"{key}\"\n"
            ),
            "listed twice",
        ),
        ("threshold = 1\nauditor = []\n".to_string(), "unknown field"),
    ] {
        let err = TrustRoot::from_toml_str(&text).unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn signed_policy_files_round_trip() {
    let node = SimNode::new();
    let board = board();
    let dir = tempfile::tempdir().unwrap();
    let policy = sim_policy_text(roles::NODE, node.key(), node.measurement, "");
    let sigs = signatures(policy.as_bytes(), &[&board.keys[0], &board.keys[1]]);
    let policy_path = dir.path().join("attestation-policy.toml");
    let sig_path = dir.path().join("attestation-policy.toml.sig");
    let root_path = dir.path().join("policy-trust-root.toml");
    std::fs::write(&policy_path, &policy).unwrap();
    std::fs::write(&root_path, toml::to_string(&board.root).unwrap()).unwrap();

    // No signature file: missing signatures.
    let err = load_signed_policy(&policy_path, &sig_path, &root_path).unwrap_err();
    assert!(matches!(err, AuditError::SignaturesMissing { .. }));

    std::fs::write(&sig_path, sigs.to_toml_string().unwrap()).unwrap();
    let loaded = load_signed_policy(&policy_path, &sig_path, &root_path).unwrap();
    assert!(matches!(loaded.provenance(), Provenance::Signed { .. }));
}
