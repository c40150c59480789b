//! The quote path with a fake `/dev/attestation` serving the dcap-qvl sample quote
//! (`cella-attest`'s test data): the pre-load module's evidence source, and the
//! executor's DCAP verification of instances of the Gramine backend, end to end over
//! the loopback TCP channel.
//!
//! The sample quote's report data is fixed ("Hello, world!"): it cannot bind a fresh key.
//! So the pre-load module refuses to present it, an executor shown it anyway refuses it
//! for exactly that reason, and its MRENCLAVE, not the one the executor expects for the
//! image, is refused by the executor's policy for that reason.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cella_attest::clock::FixedClock;
use cella_attest::dcap::{Collateral, DcapVerifier, TcbStatus};
use cella_attest::evidence::EvidenceError;
use cella_attest::gramine::GramineDcapSource;
use cella_attest::policy::{PolicyViolation, roles};
use cella_attest::ratls::issue_certificate;
use cella_attest::renew::CertResolver;
use cella_attest::tls::{AttestedServerVerifier, client_config};
use cella_attest::verify::{Refusal, VerifyError};
use cella_attest::{Evidence, EvidenceSource, Platform, Policy, ReportData, Verifier};
use cella_executor::{ExecutionError, Executor, IoLimits, StagedTask, TaskIo};
use cella_gramine::GramineBackend;
use cella_libos::backend::{
    ConnectBack, Instance, InstanceEvidence, InstanceExit, LaunchSpec, LibosBackend, SgxAppraisal,
};
use cella_libos::{BackendError, ExecutorAttestation, RuntimeImage};
use cella_preload::Identity;
use cella_types::ExecutorKind;
use rustls::pki_types::{ServerName, UnixTime};

use crate::common::{Fixture, attest_testdata};
use crate::signing::{attestation, one_instance_executor, setup, sgx_config};

/// A directory laid out like Gramine's `/dev/attestation`, serving the sample quote.
fn fake_device() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("attestation_type"), "dcap").unwrap();
    std::fs::write(dir.path().join("user_report_data"), [0u8; 64]).unwrap();
    std::fs::write(
        dir.path().join("quote"),
        std::fs::read(attest_testdata("sgx_quote")).unwrap(),
    )
    .unwrap();
    dir
}

fn collateral() -> Collateral {
    Collateral::from_json(&std::fs::read(attest_testdata("sgx_quote_collateral.json")).unwrap())
        .unwrap()
}

/// A time inside the sample collateral's validity.
fn sample_time() -> UnixTime {
    let (from, until) = collateral().validity();
    UnixTime::since_unix_epoch(Duration::from_secs(from + (until - from) / 2))
}

/// The executor's appraisal of SGX quotes, at the sample's time, accepting the sample
/// platform's TCB status and advisories: only the binding and the MRENCLAVE can refuse.
fn appraisal() -> SgxAppraisal {
    SgxAppraisal {
        dcap: DcapVerifier::new().with_collateral(collateral()),
        accepted_tcb_statuses: vec![TcbStatus::ConfigurationAndSWHardeningNeeded],
        accepted_advisory_ids: vec!["INTEL-SA-00289".into(), "INTEL-SA-00615".into()],
        allow_debug: false,
        clock: Some(Arc::new(FixedClock::at_unix_secs(sample_time().as_secs()))),
    }
}

/// Reads the fake device as Gramine's interface, without the pre-load module's check that
/// the quote carries its report data: what a broken or malicious pre-load module would
/// present.
#[derive(Debug)]
struct UncheckedDevice(PathBuf);

impl EvidenceSource for UncheckedDevice {
    fn platform(&self) -> Platform {
        Platform::SgxDcap
    }

    fn evidence(&self, report_data: &ReportData) -> Result<Evidence, EvidenceError> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.0.join("user_report_data"))
            .and_then(|mut f| f.write_all(report_data))
            .unwrap();
        let mut quote = Vec::new();
        std::fs::File::open(self.0.join("quote"))
            .and_then(|mut f| f.read_to_end(&mut quote))
            .unwrap();
        Ok(Evidence::SgxDcapQuote(quote))
    }
}

#[test]
fn the_preload_module_refuses_a_quote_that_does_not_carry_its_key() {
    let device = fake_device();
    let source = GramineDcapSource::new(device.path());
    // The pre-load module's identity: evidence over {fresh key, nonce} fails...
    let err = Identity::issue(&source, &[7; 32]).unwrap_err();
    assert!(err.to_string().contains("evidence"), "{err}");
    // ...after it did ask the device (the claims' hash written as user report data)...
    let written = std::fs::read(device.path().join("user_report_data")).unwrap();
    assert_eq!(written.len(), 64);
    assert_ne!(written, [0u8; 64]);
    // ...because the quote read back does not carry that report data.
    assert!(matches!(
        source.evidence(&[1; 64]),
        Err(EvidenceError::ReportDataMismatch { .. })
    ));
}

/// The Gramine backend in SGX mode (stand-in signing tools), appraising quotes at the
/// sample's time.
fn sgx_backend(f: &Fixture, attestation: &ExecutorAttestation) -> GramineBackend {
    GramineBackend::new(sgx_config(f), setup(f, attestation))
        .unwrap()
        .with_sgx_appraisal(appraisal())
}

#[test]
fn the_executor_refuses_the_sample_quote_for_its_binding_and_its_mrenclave() {
    let f = Fixture::new();
    let attestation = attestation();
    let backend = sgx_backend(&f, &attestation);
    let expected = backend.measurement("python3").unwrap();
    let evidence = backend.instance_evidence();
    assert!(matches!(evidence, InstanceEvidence::SgxDcap(_)));
    let verifier = attestation
        .instance_verifier_for(expected, &evidence)
        .unwrap();

    let device = fake_device();
    let nonce = [7u8; 32];
    let cert = issue_certificate(
        &UncheckedDevice(device.path().to_path_buf()),
        Some(nonce.to_vec()),
        sample_time(),
        Duration::from_secs(3600),
    )
    .unwrap();
    let err = verifier
        .verify_certificate(roles::LIBOS_INSTANCE, &cert.cert_der, Some(&nonce))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            VerifyError::Refused {
                reason: Refusal::Binding(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("report_data does not bind"),
        "{err}"
    );

    // The quote itself is genuine (it verifies against the collateral), but its
    // MRENCLAVE is not the image's: the executor's policy refuses it for that.
    let report = appraisal()
        .dcap
        .verify(
            &std::fs::read(attest_testdata("sgx_quote")).unwrap(),
            sample_time(),
        )
        .unwrap();
    assert_ne!(report.mr_enclave, expected);
    let mut policy_appraisal = appraisal();
    policy_appraisal.clock = None;
    let executor = one_instance_executor(
        &f,
        GramineBackend::new(sgx_config(&f), setup(&f, &attestation))
            .unwrap()
            .with_sgx_appraisal(policy_appraisal),
        attestation.clone(),
    );
    let policy = Policy::from_toml_str(&executor.instance_policy()).unwrap();
    let role = policy.role(roles::LIBOS_INSTANCE).unwrap();
    assert!(matches!(
        role.check_sgx(&report),
        Err(PolicyViolation::Enclave { mr_enclave, .. }) if mr_enclave == report.mr_enclave
    ));
    // The same policy for the sample's MRENCLAVE accepts the quote: only the
    // measurement made the difference.
    let same = attestation
        .instance_verifier_for(report.mr_enclave, &evidence)
        .unwrap();
    let role = same.policy().role(roles::LIBOS_INSTANCE).unwrap();
    role.check_sgx(&report).unwrap();
}

/// Wraps the Gramine backend (its measurement, connect-back channel and appraisal) but
/// launches, in-process, an "instance" presenting the sample quote from the fake device:
/// the executor's side of a Gramine launch, end to end over TCP.
#[derive(Debug)]
struct SampleQuoteInstances {
    inner: GramineBackend,
    executor_policy: String,
    device: PathBuf,
}

#[derive(Debug)]
struct Task(Option<tokio::task::JoinHandle<()>>);

#[async_trait::async_trait]
impl Instance for Task {
    fn pid(&self) -> Option<u32> {
        None
    }
    async fn wait(&mut self) -> InstanceExit {
        if let Some(h) = self.0.as_mut() {
            let _ended = h.await;
            self.0 = None;
        }
        InstanceExit::Exited(0)
    }
    fn kill(&mut self) {
        self.kill_group();
    }
    fn kill_group(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

#[async_trait::async_trait]
impl LibosBackend for SampleQuoteInstances {
    fn name(&self) -> &str {
        "gramine"
    }
    fn measure(&self, image: &RuntimeImage) -> Result<cella_attest::Measurement, BackendError> {
        self.inner.measure(image)
    }
    fn connect_back(&self) -> ConnectBack {
        self.inner.connect_back()
    }
    fn instance_evidence(&self) -> InstanceEvidence {
        self.inner.instance_evidence()
    }
    async fn launch(&self, spec: LaunchSpec<'_>) -> Result<Box<dyn Instance>, BackendError> {
        assert!(matches!(spec.socket, cella_preload::Endpoint::Tcp(_)));
        let cert = issue_certificate(
            &UncheckedDevice(self.device.clone()),
            Some(spec.nonce.to_vec()),
            sample_time(),
            Duration::from_secs(3600),
        )
        .unwrap();
        let policy = Policy::from_toml_str(&self.executor_policy).unwrap();
        let server = Arc::new(AttestedServerVerifier::new(
            Arc::new(Verifier::new(policy)),
            roles::CLIENT,
        ));
        let tls = client_config(server, Some(Arc::new(CertResolver::new(cert).unwrap()))).unwrap();
        let endpoint = spec.socket.clone();
        let handle = tokio::spawn(async move {
            let stream = endpoint.connect().await.unwrap();
            let name = ServerName::try_from("cella-libos-executor").unwrap();
            // The executor refuses our certificate: the handshake fails on our side too.
            let _refused = tokio_rustls::TlsConnector::from(Arc::new(tls))
                .connect(name, stream)
                .await;
            // Stay alive, as a process would, until the executor kills the instance: the
            // launch must fail for the refusal, not for an exit.
            std::future::pending::<()>().await;
        });
        Ok(Box::new(Task(Some(handle))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_presenting_the_sample_quote_fails_for_its_binding() {
    let f = Fixture::new();
    let attestation = attestation();
    let device = fake_device();
    let backend = SampleQuoteInstances {
        inner: sgx_backend(&f, &attestation),
        executor_policy: attestation.preload_config().executor_policy,
        device: device.path().to_path_buf(),
    };
    let executor = one_instance_executor(&f, backend, attestation);
    let program = b"print('hi')";
    let task = StagedTask::new(
        "f",
        ExecutorKind::Libos,
        &program[..],
        Duration::from_secs(10),
    )
    .with_runtime("python3");
    let mut io = TaskIo::new(BTreeMap::new(), [], IoLimits::per_slot(1024));
    let err = executor.execute(&task, &mut io).await.unwrap_err();
    // A refused attestation: no instance could be started for the task.
    let ExecutionError::Unavailable { message, .. } = &err else {
        panic!("expected an unavailable-instance error, got {err:?}")
    };
    assert!(message.contains("attestation was refused"), "{message}");
    assert!(message.contains("report_data does not bind"), "{message}");
}
