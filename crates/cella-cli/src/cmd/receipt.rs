//! `cella task receipt ID [--verify]`: a task's receipt, and for LibOS tasks its offline
//! verification, evidence → attested key → signed receipt → digests, by
//! `cella_client::receipt` (the check the Python SDK's `verify_receipt` runs too); this
//! module reads the user's files (policy, decrypted outputs, collateral) and reports.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine;
use cella_client::Client;
use cella_client::receipt::{
    CheckedReceipt, Policy, ReceiptCheckError, ReceiptPolicy, receipt_bytes, verify_task_receipt,
};
use serde_json::json;

use crate::output::Report;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the policy that appraises a receipt's evidence comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PolicySource {
    /// None: the receipt's signatures and digests are checked, its evidence not appraised.
    None,
    /// A policy file of the user's (`--policy`).
    File(PathBuf),
    /// The instance policy the node publishes over its attested channel (`--node-policy`).
    Node,
}

/// How a user gets an instance policy, for hints.
const INSTANCE_POLICY_HINT: &str = "--node-policy (the instance policy the node publishes over \
     the attested channel) or --policy FILE (e.g. saved by `cella node policy --instance`)";

/// The library's policy source for `source` (a file is read here, naming its path).
fn receipt_policy(source: PolicySource) -> anyhow::Result<ReceiptPolicy> {
    Ok(match source {
        PolicySource::None => ReceiptPolicy::None,
        PolicySource::Node => ReceiptPolicy::Node,
        PolicySource::File(p) => ReceiptPolicy::Given {
            policy: Box::new(
                Policy::load(&p).with_context(|| format!("attestation policy {}", p.display()))?,
            ),
            from: p.display().to_string(),
        },
    })
}

/// Shows, and with `verify` checks, the receipt of task `id`. `policy` appraises the
/// instance's evidence; `out_dir` holds outputs decrypted by `cella task result`, whose
/// plaintext digests are compared with the receipt's; `collateral` files verify SGX quotes.
/// The check itself is `cella_client::receipt::verify_task_receipt`, which the Python
/// SDK runs too.
pub(crate) async fn receipt(
    client: &Client,
    id: &str,
    verify: bool,
    policy: PolicySource,
    out_dir: Option<PathBuf>,
    collateral: &[PathBuf],
) -> anyhow::Result<Report> {
    if !verify {
        let task = client.get_task(id).await?;
        let Some(bytes) = receipt_bytes(&task) else {
            bail!("{id} has no receipt: receipts exist once a task is Finished");
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        return Ok(Report::new(
            json!({ "task": id, "receipt": b64 }),
            format!(
                "receipt of {id} ({} bytes, not verified; add --verify)\n{b64}",
                bytes.len()
            ),
        ));
    }
    let policy = receipt_policy(policy)?;
    let dcap = crate::collateral::dcap_verifier(&crate::collateral::load(collateral)?);
    let mut outputs = BTreeMap::new();
    if let Some(dir) = &out_dir {
        let task = client.get_task(id).await?;
        for o in task.result.iter().flat_map(|r| &r.outputs) {
            if let Ok(data) = std::fs::read(dir.join(&o.slot)) {
                outputs.insert(o.slot.clone(), cella_types::Digest::of(&data));
            }
        }
        if outputs.is_empty() {
            bail!(
                "no decrypted output of {id} in {} (run `cella task result` first)",
                dir.display()
            );
        }
    }
    let checked = verify_task_receipt(client, id, policy, outputs, &dcap)
        .await
        .map_err(|e| match e {
            ReceiptCheckError::NoInstanceRole { .. } => {
                anyhow::Error::new(e).context(format!("give {INSTANCE_POLICY_HINT}"))
            }
            e => e.into(),
        })?;
    Ok(report(id, &checked))
}

/// The CLI's report of a verified receipt.
fn report(id: &str, checked: &CheckedReceipt) -> Report {
    let CheckedReceipt {
        verified, expected, ..
    } = checked;
    let body = &verified.body;
    let entries = |e: &[cella_libos::receipt::Entry]| -> Vec<serde_json::Value> {
        e.iter()
            .map(|e| json!({ "name": e.name, "sha256": hex(&e.sha256) }))
            .collect()
    };
    let exit = body.exit.map(|e| e.to_string()).unwrap_or_default();
    let trust = match (verified.appraised, verified.sim_signer) {
        (true, _) => "evidence appraised against the policy".to_owned(),
        (false, Some(k)) => format!(
            "simulation evidence signed by {k} (not hardware-backed); to check that key, give \
             {INSTANCE_POLICY_HINT}"
        ),
        (false, None) => format!("evidence not appraised: give {INSTANCE_POLICY_HINT}"),
    };
    let human = format!(
        "receipt of {id} verifies: evidence → key → receipt → digests\n  measurement  {} ({})\n  {trust}\n  program      {}\n  inputs       {}\n  outputs      {}{}\n  exit         {exit}",
        verified.measurement,
        verified.platform,
        body.workload
            .first()
            .map(|w| hex(&w.sha256))
            .unwrap_or_default(),
        body.inputs
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        body.outputs
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if expected.outputs.is_empty() {
            ""
        } else {
            " (decrypted files match)"
        },
    );
    Report::new(
        json!({
            "task": id,
            "verified": true,
            "measurement": verified.measurement.to_string(),
            "platform": verified.platform.name(),
            "sim_signer": verified.sim_signer.map(|k| k.to_string()),
            "appraised": verified.appraised,
            "workload": entries(&body.workload),
            "inputs": entries(&body.inputs),
            "outputs": entries(&body.outputs),
            "outputs_checked": expected.outputs.keys().collect::<Vec<_>>(),
            "exit": exit,
        }),
        human,
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::PolicySource;
    use crate::cmd::task::TaskCmd;
    use crate::{Cli, Command};

    const TASK_ID: &str = "task-0b5bd5fe-2a0d-4a8e-9d59-3b1b7d1c1a6e";

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cella").chain(args.iter().copied()))
    }

    #[test]
    fn task_receipt_parses_and_policy_needs_verify() {
        let cli = parse(&[
            "task",
            "receipt",
            TASK_ID,
            "--verify",
            "--policy",
            "p.toml",
            "--out-dir",
            "d",
        ])
        .unwrap();
        let Command::Task(TaskCmd::Receipt {
            id,
            verify,
            policy,
            node_policy,
            out_dir,
            collateral,
        }) = cli.command
        else {
            panic!("not task receipt");
        };
        assert_eq!(id, TASK_ID);
        assert!(verify);
        assert_eq!(policy.unwrap().to_str(), Some("p.toml"));
        assert_eq!(out_dir.unwrap().to_str(), Some("d"));
        assert!(collateral.is_empty());
        assert!(!node_policy);
        assert!(parse(&["task", "receipt", TASK_ID, "--policy", "p.toml"]).is_err());
        // --node-policy instead of a file, not both; collateral goes with either.
        let cli = parse(&["task", "receipt", TASK_ID, "--verify", "--node-policy"]).unwrap();
        let Command::Task(TaskCmd::Receipt { node_policy, .. }) = cli.command else {
            panic!("not task receipt");
        };
        assert!(node_policy);
        for bad in [
            &["task", "receipt", TASK_ID, "--node-policy"][..],
            &[
                "task",
                "receipt",
                TASK_ID,
                "--verify",
                "--node-policy",
                "--policy",
                "p.toml",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse(&[
                "task",
                "receipt",
                TASK_ID,
                "--verify",
                "--node-policy",
                "--collateral",
                "a.json"
            ])
            .is_ok()
        );
        // --collateral (repeatable) appraises SGX evidence under a policy.
        let cli = parse(&[
            "task",
            "receipt",
            TASK_ID,
            "--verify",
            "--policy",
            "p.toml",
            "--collateral",
            "a.json",
            "--collateral",
            "b.json",
        ])
        .unwrap();
        let Command::Task(TaskCmd::Receipt { collateral, .. }) = cli.command else {
            panic!("not task receipt");
        };
        assert_eq!(collateral.len(), 2);
        assert!(
            parse(&[
                "task",
                "receipt",
                TASK_ID,
                "--verify",
                "--collateral",
                "a.json"
            ])
            .is_err()
        );
        assert!(parse(&["task", "receipt", "nope", "--verify"]).is_err());
    }

    /// A node with a mock LibOS executor, one finished libos task, and the CLI's receipt
    /// check against it: it verifies, matches the decrypted output, and refuses a file
    /// that is not the output and a policy that does not trust the instance's key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn task_receipt_verify_checks_a_real_libos_receipt() {
        use std::collections::HashMap;
        use std::net::SocketAddr;
        use std::sync::Arc;

        use cella_client::{Client, UploadSource, proto};
        use cella_crypto::FileKey;
        use cella_libos::{ExecutorConfig, RuntimeImage};
        use cella_platform::NodeConfig;
        use cella_server::{RunningNode, ServerConfig, default_executors};

        let dir = tempfile::tempdir().unwrap();
        let mut node = NodeConfig::new(dir.path().join("data"));
        node.workers = 1;
        let mut executors = default_executors(&node).unwrap();
        let (libos, _mock) =
            cella_libos::mock::executor(vec![RuntimeImage::native()], ExecutorConfig::default())
                .unwrap();
        let instance_policy = libos.instance_policy();
        executors.register(Arc::new(libos));
        let mut config = ServerConfig::new(node.clone(), SocketAddr::from(([127, 0, 0, 1], 0)));
        config.instance_policy = Some(instance_policy.clone());
        let running = RunningNode::start(config, executors).await.unwrap();
        let addr = running.addr().to_string();
        let mut admin = Client::connect(&addr, running.cert_pem().as_bytes())
            .await
            .unwrap();
        let pw = std::fs::read_to_string(node.admin_password_path()).unwrap();
        admin.login("admin", pw.trim()).await.unwrap();
        let roles = ["function_owner".to_owned(), "data_owner".to_owned()];
        admin
            .register_user("fo", "a long password", &roles)
            .await
            .unwrap();
        let mut fo = Client::connect(&addr, running.cert_pem().as_bytes())
            .await
            .unwrap();
        fo.login("fo", "a long password").await.unwrap();

        let slot = |name: &str| proto::SlotSpec {
            name: name.into(),
            optional: false,
        };
        let f = fo
            .register_function(
                proto::FunctionSpec {
                    name: "upper".into(),
                    executor: "libos".into(),
                    runtime: "native".into(),
                    inputs: vec![slot("in")],
                    outputs: vec![slot("out")],
                    public: true,
                    ..Default::default()
                },
                b"upper in out\n".to_vec(),
            )
            .await
            .unwrap();
        let owners = |s: &str| proto::SlotOwners {
            slot: s.into(),
            owners: vec!["fo".into()],
        };
        let t = fo
            .create_task(
                &f.function_id,
                HashMap::new(),
                vec![owners("in")],
                vec![owners("out")],
            )
            .await
            .unwrap();
        let crypto = |k: &FileKey| proto::FileCrypto {
            schema: "cella-sealed-v1".into(),
            key: k.as_bytes().to_vec(),
        };
        let in_key = FileKey::generate();
        let ct = cella_crypto::stream::seal_to_vec(b"hello", &in_key).unwrap();
        let digest = cella_types::Digest::of(&ct).to_hex();
        let input = fo
            .upload_input(
                UploadSource::reader(std::io::Cursor::new(ct)),
                crypto(&in_key),
                &digest,
                None,
            )
            .await
            .unwrap()
            .file_id;
        let out_key = FileKey::generate();
        let out = fo
            .register_output(crypto(&out_key), None)
            .await
            .unwrap()
            .file_id;
        let file = |s: &str, id: &str| proto::SlotFile {
            slot: s.into(),
            file_id: id.into(),
        };
        let t = fo
            .assign_data(
                &t.task_id,
                vec![file("in", &input)],
                vec![file("out", &out)],
            )
            .await
            .unwrap();
        fo.approve_task(&t.task_id, &t.task_digest).await.unwrap();
        fo.invoke_task(&t.task_id).await.unwrap();
        let done = fo.wait_terminal(&t.task_id).await.unwrap();
        assert!(done.result.is_some(), "{}", done.reason);

        let shown = super::receipt(&fo, &t.task_id, false, PolicySource::None, None, &[])
            .await
            .unwrap();
        assert!(shown.human.contains("not verified"));
        let report = super::receipt(&fo, &t.task_id, true, PolicySource::None, None, &[])
            .await
            .unwrap();
        assert_eq!(report.json["verified"], true);
        assert!(
            report.human.contains("simulation evidence signed by")
                && report.human.contains("--node-policy"),
            "{}",
            report.human
        );

        // The instance policy the node publishes appraises the evidence...
        assert_eq!(
            fo.policies().await.unwrap().instance_policy,
            instance_policy
        );
        let report = super::receipt(&fo, &t.task_id, true, PolicySource::Node, None, &[])
            .await
            .unwrap();
        assert_eq!(report.json["appraised"], true, "{}", report.human);
        // ...and the node's TLS policy, the file users used to be sent to, is refused
        // with what to use instead.
        let tls_policy = running.policy_file().to_owned();
        let err = super::receipt(
            &fo,
            &t.task_id,
            true,
            PolicySource::File(tls_policy),
            None,
            &[],
        )
        .await
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("no role \"libos-instance\"") && err.contains("--node-policy"),
            "{err}"
        );

        // The decrypted output matches; another file in its place does not.
        let outputs = dir.path().join("outputs");
        std::fs::create_dir(&outputs).unwrap();
        std::fs::write(outputs.join("out"), b"HELLO").unwrap();
        let report = super::receipt(
            &fo,
            &t.task_id,
            true,
            PolicySource::None,
            Some(outputs.clone()),
            &[],
        )
        .await
        .unwrap();
        assert!(
            report.human.contains("decrypted files match"),
            "{}",
            report.human
        );
        std::fs::write(outputs.join("out"), b"HELLO!").unwrap();
        let err = super::receipt(
            &fo,
            &t.task_id,
            true,
            PolicySource::None,
            Some(outputs),
            &[],
        )
        .await
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("digest of output \"out\""),
            "{err:#}"
        );

        // A policy that trusts another simulation key refuses the evidence.
        let stranger = cella_attest_key();
        let policy = dir.path().join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "version = 1\n[roles.\"libos-instance\"]\nmax_evidence_age_secs = 600\n\
                 allow_simulation = true\ntrusted_sim_keys = [\"{stranger}\"]\n\
                 sim_measurements = [\"{}\"]\n",
                report.json["measurement"].as_str().unwrap()
            ),
        )
        .unwrap();
        let err = super::receipt(
            &fo,
            &t.task_id,
            true,
            PolicySource::File(policy.clone()),
            None,
            &[],
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("evidence"), "{err:#}");

        // A malformed collateral file is an error naming it, before any verification.
        let bad = dir.path().join("bad-collateral.json");
        std::fs::write(&bad, b"{}").unwrap();
        let err = super::receipt(
            &fo,
            &t.task_id,
            true,
            PolicySource::File(policy),
            None,
            &[bad],
        )
        .await
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("bad-collateral.json"),
            "{err:#}"
        );
        running.shutdown().await;
    }

    /// A simulation public key nobody uses, as 64 hex digits.
    fn cella_attest_key() -> String {
        "11".repeat(32)
    }
}
