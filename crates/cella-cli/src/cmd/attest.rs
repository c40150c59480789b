//! `cella attest ADDR --policy FILE`: what the node at ADDR proves about itself, and
//! whether the attestation policy accepts it as role `node`. No login; nothing but the
//! TLS handshake is sent. The report is printed in both cases; a refusal exits 5.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use cella_attest::policy::Provenance;
use cella_attest::verify::EvidenceSummary;
use cella_attest::{Platform, Policy, Verifier};
use serde_json::{Value, json};

use crate::output::Report;

/// `cella attest` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct AttestArgs {
    /// Node address (`host:port`).
    pub(crate) addr: String,
    /// Attestation policy (e.g. the node's `<data_dir>/tls/attestation-policy.sim.toml`).
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: PathBuf,
    /// Trust root naming the auditors who must sign the policy (k of n); the signatures
    /// are read from `--signatures`, by default `<policy>.sig`.
    #[arg(long, value_name = "FILE")]
    pub(crate) trust_root: Option<PathBuf>,
    /// Detached auditor signatures of the policy.
    #[arg(long, value_name = "FILE", requires = "trust_root")]
    pub(crate) signatures: Option<PathBuf>,
    /// DCAP collateral JSON for verifying an SGX node's quote (repeatable, one per
    /// platform FMSPC). Without it, SGX evidence is refused as "no collateral".
    #[arg(long, value_name = "FILE")]
    pub(crate) collateral: Vec<PathBuf>,
}

fn load_policy(args: &AttestArgs) -> anyhow::Result<Policy> {
    let context = || format!("attestation policy {}", args.policy.display());
    match &args.trust_root {
        None => Policy::load(&args.policy).with_context(context),
        Some(root) => {
            let sigs = args.signatures.clone().unwrap_or_else(|| {
                let mut p = args.policy.clone().into_os_string();
                p.push(".sig");
                PathBuf::from(p)
            });
            cella_attest::auditors::load_signed_policy(&args.policy, &sigs, root)
                .with_context(context)
        }
    }
}

fn evidence_json(e: &EvidenceSummary) -> Value {
    json!({
        "platform": e.platform.name(),
        "hardware_backed": e.platform != Platform::Sim,
        "measurement": e.measurement.to_string(),
        "mr_signer": e.mr_signer.map(|m| m.to_string()),
        "isv_prod_id": e.isv_prod_id_svn.map(|(p, _)| p),
        "isv_svn": e.isv_prod_id_svn.map(|(_, s)| s),
        "tcb_status": e.tcb_status.map(|s| s.name()),
        "advisory_ids": e.advisory_ids,
        "debug": e.debug,
        "issued_at": e.issued_at,
        "age_secs": e.age_secs,
        "sim_signer": e.sim_signer.map(|k| k.to_string()),
        "authenticated": e.authenticated,
    })
}

fn evidence_text(e: &EvidenceSummary) -> String {
    let platform = match e.platform {
        Platform::Sim => "sim (software-signed, NOT hardware-backed)".to_owned(),
        Platform::SgxDcap => "sgx-dcap".to_owned(),
    };
    let tcb = match (e.platform, e.tcb_status) {
        (Platform::Sim, _) => "n/a (simulation)".to_owned(),
        (_, Some(status)) if e.advisory_ids.is_empty() => status.to_string(),
        (_, Some(status)) => format!("{status} ({})", e.advisory_ids.join(", ")),
        (_, None) => "unknown (quote not verified)".to_owned(),
    };
    let mut text = format!(
        "evidence:     {platform}\nmeasurement:  {}\n",
        e.measurement
    );
    if let Some(signer) = e.mr_signer {
        text.push_str(&format!("mr_signer:    {signer}\n"));
    }
    text.push_str(&format!(
        "tcb status:   {tcb}\nevidence age: {} s{}\n",
        e.age_secs,
        if e.debug { "\ndebug:        yes" } else { "" }
    ));
    text
}

/// Runs `cella attest`.
pub(crate) async fn run(args: AttestArgs) -> anyhow::Result<Report> {
    let policy = load_policy(&args)?;
    let collateral = crate::collateral::load(&args.collateral)?;
    let collateral_json = crate::collateral::summary(&args.collateral, &collateral);
    let signed = match policy.provenance() {
        Provenance::Unsigned => json!(null),
        Provenance::Signed {
            auditors,
            threshold,
        } => json!({ "auditors": auditors, "threshold": threshold }),
    };
    let verifier = Verifier::new(policy).with_dcap(crate::collateral::dcap_verifier(&collateral));
    let appraisal = cella_client::appraise_node(&args.addr, Arc::new(verifier)).await?;
    let (verdict, reason) = match &appraisal.verdict {
        Ok(_) => ("accepted", None),
        Err(e) => ("refused", Some(e.to_string())),
    };
    let mut human = format!("node:         {}\n", args.addr);
    if let Some(e) = &appraisal.claimed {
        human.push_str(&evidence_text(e));
    }
    match &reason {
        None => human.push_str("verdict:      accepted"),
        Some(r) => human.push_str(&format!("verdict:      refused: {r}")),
    }
    let mut report = Report::new(
        json!({
            "addr": args.addr,
            "evidence": appraisal.claimed.as_ref().map(evidence_json),
            "verdict": verdict,
            "reason": reason,
            "policy_signed_by": signed,
            "collateral": collateral_json,
        }),
        human,
    );
    if appraisal.verdict.is_err() {
        report.exit = crate::exit::Exit::AttestationRefused;
    }
    Ok(report)
}
