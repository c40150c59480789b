//! Signing and measuring with stand-ins of `gramine-sgx-sign` and
//! `gramine-sgx-sigstruct-view`: the executor's policy expects exactly the MRENCLAVE the
//! signing tools report, and a missing installation is a start-up error.

use std::sync::Arc;

use cella_attest::policy::roles;
use cella_attest::sim::SimSigner;
use cella_attest::{Measurement, Policy};
use cella_gramine::backend::{GramineBackend, ImageOnDisk, Setup, SetupError};
use cella_gramine::{GramineConfig, Mode};
use cella_libos::{ExecutorAttestation, ExecutorConfig, LibosBackend, LibosExecutor, PoolConfig};

use crate::common::{Fixture, attest_testdata, standin};

pub(crate) fn attestation() -> ExecutorAttestation {
    ExecutorAttestation::simulated(
        Arc::new(SimSigner::generate().unwrap()),
        Measurement::sha256(b"the executor"),
    )
}

/// An SGX configuration using the stand-ins, a key and the sample collateral.
pub(crate) fn sgx_config(f: &Fixture) -> GramineConfig {
    let key = f.root.join("enclave-key.pem");
    std::fs::write(&key, b"not really an RSA key: the stand-in only hashes it").unwrap();
    let mut c = GramineConfig::defaults(Mode::Sgx);
    c.gramine_sgx = Some(standin("standin-gramine-sgx"));
    c.sgx_sign = Some(standin("standin-gramine-sgx-sign"));
    c.sigstruct_view = Some(standin("standin-gramine-sgx-sigstruct-view"));
    c.signing_key = Some(key);
    c.collateral = Some(attest_testdata("sgx_quote_collateral.json"));
    c.libos = Some(f.libos.path.clone());
    c.preload = Some(f.preload.path.clone());
    c
}

/// An executor on `backend` for the fixture's python3 image, with no warm instance and at
/// most one live.
pub(crate) fn one_instance_executor(
    f: &Fixture,
    backend: impl LibosBackend + 'static,
    attestation: ExecutorAttestation,
) -> LibosExecutor {
    LibosExecutor::new(
        Arc::new(backend),
        vec![f.python3.clone()],
        attestation,
        ExecutorConfig {
            pool: PoolConfig { warm: 0, max: 1 },
            ..ExecutorConfig::default()
        },
    )
    .unwrap()
}

pub(crate) fn setup(f: &Fixture, attestation: &ExecutorAttestation) -> Setup {
    Setup {
        work_dir: f.root.join("work"),
        images: vec![ImageOnDisk {
            image: f.python3.clone(),
            rootfs: f.rootfs("python3"),
        }],
        executor_policy: attestation.preload_config().executor_policy,
        preload_libraries: Vec::new(),
        hardware: Arc::clone(attestation.hardware()),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

#[test]
fn the_executor_expects_exactly_the_signed_mrenclave() {
    let f = Fixture::new();
    let attestation = attestation();
    let config = sgx_config(&f);
    let key = std::fs::read(config.signing_key.as_ref().unwrap()).unwrap();
    let backend = GramineBackend::new(config, setup(&f, &attestation)).unwrap();
    let manifest_path = backend.manifest_path("python3").unwrap();
    let manifest = std::fs::read(&manifest_path).unwrap();
    // What the stand-in signer computed from the manifest it was given.
    let expected: Measurement = sha256_hex(&[manifest.clone(), key].concat())
        .parse()
        .unwrap();
    assert_eq!(backend.measurement("python3"), Some(expected));
    assert!(manifest_path.with_extension("manifest.sgx").is_file());
    assert!(manifest_path.with_file_name("instance.sig").is_file());
    // The manifest written is one the structural checks accept, with files that exist.
    let checked =
        cella_gramine::schema::check(std::str::from_utf8(&manifest).unwrap(), Mode::Sgx).unwrap();
    cella_gramine::schema::verify_files(&checked).unwrap();

    let executor = one_instance_executor(&f, backend, attestation);
    assert_eq!(executor.measurement("python3"), Some(expected));
    let policy = Policy::from_toml_str(&executor.instance_policy()).unwrap();
    let role = policy.role(roles::LIBOS_INSTANCE).unwrap();
    assert_eq!(role.mr_enclave, [expected]);
    assert!(!role.allow_simulation && role.sim_measurements.is_empty());
    assert!(!role.allow_debug);
}

#[test]
fn the_measurement_follows_the_image_and_the_configuration() {
    let f = Fixture::new();
    let attestation = attestation();
    let m = |config: GramineConfig, s: Setup| {
        GramineBackend::new(config, s)
            .unwrap()
            .measurement("python3")
            .unwrap()
    };
    let base = m(sgx_config(&f), setup(&f, &attestation));
    assert_eq!(
        base,
        m(sgx_config(&f), setup(&f, &attestation)),
        "deterministic"
    );
    let mut edmm = sgx_config(&f);
    edmm.edmm_enable = true;
    assert_ne!(base, m(edmm, setup(&f, &attestation)));
    let mut other = setup(&f, &attestation);
    other.images[0].image.argv.push("-I".into());
    assert_ne!(base, m(sgx_config(&f), other));
    // Another node (another key playing the hardware) trusts another executor.
    let stranger = self::attestation();
    assert_ne!(base, m(sgx_config(&f), setup(&f, &stranger)));
}

#[test]
fn a_missing_installation_or_setting_is_a_start_up_error() {
    let f = Fixture::new();
    let attestation = attestation();
    let err = |config: GramineConfig| {
        GramineBackend::new(config, setup(&f, &attestation))
            .unwrap_err()
            .to_string()
    };
    let mut c = sgx_config(&f);
    c.gramine_sgx = Some(f.root.join("no/gramine-sgx"));
    let e = err(c);
    assert!(
        e.contains("Gramine is not installed") && e.contains("gramine_sgx"),
        "{e}"
    );
    let mut c = sgx_config(&f);
    c.sgx_sign = Some(f.root.join("no/gramine-sgx-sign"));
    assert!(err(c).contains("gramine-sgx-sign"));
    let mut c = sgx_config(&f);
    c.signing_key = Some(f.root.join("no-key.pem"));
    assert!(err(c).contains("signing key"));
    let mut c = sgx_config(&f);
    c.collateral = Some(f.root.join("no-collateral.json"));
    assert!(err(c).contains("DCAP collateral"));
    let mut c = sgx_config(&f);
    c.libos = Some(f.root.join("no/libsysdb.so"));
    assert!(err(c).contains("libsysdb.so"));
    // gramine-direct offers no quotes: refused unless simulation is allowed.
    let mut c = sgx_config(&f);
    c.mode = Mode::Direct;
    c.allow_simulation = false;
    assert!(err(c).contains("allow_simulation"));
    // A signing tool that fails is reported with its own words.
    let mut c = sgx_config(&f);
    c.signing_key = Some(f.root.join("gramine")); // a directory: cannot be read as a key
    let e = err(c);
    assert!(e.contains("standin-gramine-sgx-sign"), "{e}");
}

#[test]
fn a_runtime_image_it_did_not_prepare_is_refused() {
    use cella_libos::LibosBackend;
    let f = Fixture::new();
    let attestation = attestation();
    let backend = GramineBackend::new(sgx_config(&f), setup(&f, &attestation)).unwrap();
    let mut changed = f.python3.clone();
    changed.files.pop();
    let e = backend.measure(&changed).unwrap_err().to_string();
    assert!(e.contains("differs"), "{e}");
    let e = backend
        .measure(&cella_libos::RuntimeImage::native())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no Gramine enclave"), "{e}");
    assert!(matches!(
        GramineBackend::new(
            {
                let mut c = sgx_config(&f);
                c.max_threads = 1;
                c
            },
            setup(&f, &attestation)
        ),
        Err(SetupError::Config(_))
    ));
}
