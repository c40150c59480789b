//! The verifier: from a peer's RA-TLS certificate to a [`VerifiedEvidence`], or a reason.
//!
//! Steps, in order (the first failure is the reason given):
//!
//! 1. the role must exist in the policy (our configuration);
//! 2. the certificate parses and carries evidence; it is within its validity period;
//! 3. the evidence binds the certificate's key ([`crate::ratls`]);
//! 4. the evidence is authentic: simulation evidence must be allowed by the role and signed
//!    by one of its `trusted_sim_keys`; an SGX quote must verify against collateral at the
//!    verifier's time;
//! 5. the role's policy accepts it (measurement, debug, TCB status, advisories);
//! 6. it is fresh: issued no later than [`MAX_CLOCK_SKEW`] ahead of now and no earlier than
//!    `max_evidence_age_secs` ago; if a nonce is expected, the claims carry exactly it.
//!
//! Issue time: for simulation evidence, the issued-at signed by the simulation key; for SGX
//! evidence, the certificate's `notBefore` (asserted by the enclave, which holds the key,
//! from a clock the host supplies: a host can make evidence look older, never newer than
//! when the enclave produced it, unless the enclave's code accepts a forward-dated clock).
//! Use a nonce for freshness that does not depend on any clock.
//!
//! [`VerifiedEvidence`] has no public constructor: the [`Verifier`] is the only way to get
//! one, so code that requires it (opening a channel, releasing a key) cannot be handed an
//! unverified peer.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::UnixTime;

use crate::clock::{Clock, SystemClock};
use crate::dcap::{CollateralError, DcapError, DcapVerifier, QuoteError, TcbStatus};
use crate::ed25519::Ed25519PublicKey;
use crate::evidence::{Evidence, Platform, ReportData};
use crate::measurement::Measurement;
use crate::policy::{Policy, PolicyViolation};
use crate::ratls::{BindingError, CertError, EvidenceExtension, RaTlsCert};
use crate::sim::{SimEvidence, SimVerifyError};

/// Clock difference tolerated between peers: evidence issued up to this far in the future
/// is accepted, and certificates are accepted this long before `notBefore`. Two minutes
/// covers NTP-disciplined hosts with margin.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(120);

/// What the peer's evidence claims, as far as it could be read. Trustworthy only if the
/// verdict is `Ok` (and `authenticated` says whether its signature or quote verified).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EvidenceSummary {
    /// The platform.
    pub platform: Platform,
    /// Simulation measurement or SGX `MRENCLAVE`.
    pub measurement: Measurement,
    /// SGX `MRSIGNER`.
    pub mr_signer: Option<Measurement>,
    /// SGX `ISVPRODID` and `ISVSVN`.
    pub isv_prod_id_svn: Option<(u16, u16)>,
    /// SGX TCB status (after DCAP verification only).
    pub tcb_status: Option<TcbStatus>,
    /// SGX advisories (after DCAP verification only).
    pub advisory_ids: Vec<String>,
    /// Debug enclave or instance.
    pub debug: bool,
    /// When the evidence was issued, seconds since the epoch.
    pub issued_at: u64,
    /// Its age at verification, in seconds (0 if issued in the future).
    pub age_secs: u64,
    /// The simulation signing key.
    pub sim_signer: Option<Ed25519PublicKey>,
    /// Whether the signature or quote verified.
    pub authenticated: bool,
}

/// SGX identity of verified evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxIdentity {
    /// `MRSIGNER`.
    pub mr_signer: Measurement,
    /// `ISVPRODID`.
    pub isv_prod_id: u16,
    /// `ISVSVN`.
    pub isv_svn: u16,
    /// TCB status.
    pub tcb_status: TcbStatus,
    /// Advisories (all accepted by the policy).
    pub advisory_ids: Vec<String>,
}

/// Evidence that passed verification under a role's policy. Only the [`Verifier`] builds
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEvidence {
    role: String,
    platform: Platform,
    measurement: Measurement,
    sgx: Option<SgxIdentity>,
    sim_signer: Option<Ed25519PublicKey>,
    debug: bool,
    issued_at: UnixTime,
    verified_at: UnixTime,
    report_data: ReportData,
    nonce: Option<Vec<u8>>,
    spki_der: Vec<u8>,
    extension: EvidenceExtension,
}

impl VerifiedEvidence {
    /// The role it was verified for.
    pub fn role(&self) -> &str {
        &self.role
    }
    /// The platform.
    pub fn platform(&self) -> Platform {
        self.platform
    }
    /// Simulation measurement or SGX `MRENCLAVE`.
    pub fn measurement(&self) -> Measurement {
        self.measurement
    }
    /// SGX identity, for SGX evidence.
    pub fn sgx(&self) -> Option<&SgxIdentity> {
        self.sgx.as_ref()
    }
    /// The simulation key that signed, for simulation evidence.
    pub fn sim_signer(&self) -> Option<Ed25519PublicKey> {
        self.sim_signer
    }
    /// Whether the peer is a debug enclave or instance (only if the policy allowed it).
    pub fn debug(&self) -> bool {
        self.debug
    }
    /// When the evidence was issued.
    pub fn issued_at(&self) -> UnixTime {
        self.issued_at
    }
    /// When it was verified.
    pub fn verified_at(&self) -> UnixTime {
        self.verified_at
    }
    /// Its age when verified.
    pub fn age(&self) -> Duration {
        Duration::from_secs(
            self.verified_at
                .as_secs()
                .saturating_sub(self.issued_at.as_secs()),
        )
    }
    /// The report_data bound into the evidence.
    pub fn report_data(&self) -> &ReportData {
        &self.report_data
    }
    /// The nonce claim, if any.
    pub fn nonce(&self) -> Option<&[u8]> {
        self.nonce.as_deref()
    }
    /// The attested public key (SubjectPublicKeyInfo DER).
    pub fn public_key_spki(&self) -> &[u8] {
        &self.spki_der
    }
    /// Which certificate extension carried the evidence.
    pub fn extension(&self) -> EvidenceExtension {
        self.extension
    }
    /// A summary for display.
    pub fn summary(&self) -> EvidenceSummary {
        EvidenceSummary {
            platform: self.platform,
            measurement: self.measurement,
            mr_signer: self.sgx.as_ref().map(|s| s.mr_signer),
            isv_prod_id_svn: self.sgx.as_ref().map(|s| (s.isv_prod_id, s.isv_svn)),
            tcb_status: self.sgx.as_ref().map(|s| s.tcb_status),
            advisory_ids: self
                .sgx
                .as_ref()
                .map(|s| s.advisory_ids.clone())
                .unwrap_or_default(),
            debug: self.debug,
            issued_at: self.issued_at.as_secs(),
            age_secs: self.age().as_secs(),
            sim_signer: self.sim_signer,
            authenticated: true,
        }
    }
}

/// Evidence is not fresh (the peer's fault, or clocks disagree).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FreshnessError {
    /// Older than the role's maximum.
    #[error("evidence is {age_secs} s old, older than max_evidence_age_secs = {max_secs}")]
    TooOld {
        /// Its age.
        age_secs: u64,
        /// The maximum.
        max_secs: u64,
    },
    /// Issued in the future.
    #[error("evidence is issued {ahead_secs} s in the future (clock skew tolerated: {} s)", MAX_CLOCK_SKEW.as_secs())]
    FromTheFuture {
        /// How far ahead.
        ahead_secs: u64,
    },
    /// The certificate is outside its validity period.
    #[error("certificate is valid from {not_before} to {not_after} (unix), not at {now}")]
    CertificateValidity {
        /// `notBefore`.
        not_before: u64,
        /// `notAfter`.
        not_after: u64,
        /// Now.
        now: u64,
    },
    /// A nonce was expected but the claims carry none.
    #[error("evidence carries no nonce, but a fresh nonce was expected")]
    NonceMissing,
    /// The claims carry another nonce.
    #[error("evidence carries a different nonce than the one expected (replayed or stale)")]
    NonceMismatch,
}

/// Why the peer's evidence was refused (the peer's fault).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// Malformed certificate or evidence.
    #[error(transparent)]
    Certificate(#[from] CertError),
    /// The evidence does not bind the certificate's key.
    #[error(transparent)]
    Binding(#[from] BindingError),
    /// The quote does not verify.
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// The simulation evidence is not signed by a trusted key.
    #[error(transparent)]
    Sim(#[from] SimVerifyError),
    /// The policy does not accept the evidence.
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
    /// The evidence is not fresh.
    #[error(transparent)]
    Freshness(#[from] FreshnessError),
}

/// Our configuration cannot verify the peer (our fault, not the peer's).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigProblem {
    /// The role is not in the policy.
    #[error("role is not defined in the attestation policy")]
    UnknownRole,
    /// Collateral is missing or stale.
    #[error(transparent)]
    Collateral(#[from] CollateralError),
}

/// Verification failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// The peer's evidence is refused.
    #[error("attestation of the peer as {role:?} refused: {reason}")]
    Refused {
        /// The role.
        role: String,
        /// Why.
        reason: Refusal,
    },
    /// Our configuration cannot verify it.
    #[error("cannot attest the peer as {role:?}: {problem}")]
    Config {
        /// The role.
        role: String,
        /// What is wrong.
        problem: ConfigProblem,
    },
}

impl Refusal {
    /// A stable, low-cardinality name for why the evidence was refused, for metrics
    /// (`cella_attestation_refusals_total{reason}`): `certificate`, `binding`, `quote`,
    /// `simulation_key`, `policy` or `freshness`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Certificate(_) => "certificate",
            Self::Binding(_) => "binding",
            Self::Quote(_) => "quote",
            Self::Sim(_) => "simulation_key",
            Self::Policy(_) => "policy",
            Self::Freshness(_) => "freshness",
        }
    }
}

impl VerifyError {
    /// [`Refusal::reason`] of a refusal, or `configuration` when our own configuration
    /// could not verify the peer.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused { reason, .. } => reason.reason(),
            Self::Config { .. } => "configuration",
        }
    }

    /// Whether the failure is ours (configuration) rather than the peer's.
    pub fn is_local(&self) -> bool {
        matches!(self, VerifyError::Config { .. })
    }

    /// The refusal, if the peer's evidence was refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            VerifyError::Refused { reason, .. } => Some(reason),
            VerifyError::Config { .. } => None,
        }
    }
}

/// The outcome of verifying a certificate: what it claims, and the verdict.
#[derive(Debug, Clone)]
pub struct Appraisal {
    /// What the evidence claims, if it could be parsed.
    pub claimed: Option<EvidenceSummary>,
    /// The verdict.
    pub verdict: Result<VerifiedEvidence, VerifyError>,
}

/// Verifies peers' RA-TLS certificates against a policy.
#[derive(Debug, Clone)]
pub struct Verifier {
    policy: Arc<Policy>,
    dcap: DcapVerifier,
    clock: Arc<dyn Clock>,
}

enum Step {
    Refused(Refusal),
    Config(ConfigProblem),
}

macro_rules! refusal_step {
    ($($t:ty),*) => {$(
        impl From<$t> for Step {
            fn from(e: $t) -> Self {
                Step::Refused(e.into())
            }
        }
    )*};
}
refusal_step!(
    CertError,
    BindingError,
    QuoteError,
    SimVerifyError,
    PolicyViolation,
    FreshnessError
);

impl Verifier {
    /// A verifier for `policy`, with no DCAP collateral (so SGX evidence is refused with a
    /// configuration error until some is added) and the system clock.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy: Arc::new(policy),
            dcap: DcapVerifier::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Verify SGX quotes with `dcap`.
    #[must_use]
    pub fn with_dcap(mut self, dcap: DcapVerifier) -> Self {
        self.dcap = dcap;
        self
    }

    /// Judge time with `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The verifier's current time.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Verify a peer's certificate for `role`, optionally requiring `expected_nonce` in its
    /// claims.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Refused`] with the reason if the evidence is refused,
    /// [`VerifyError::Config`] if our configuration cannot verify it.
    pub fn verify_certificate(
        &self,
        role: &str,
        cert_der: &[u8],
        expected_nonce: Option<&[u8]>,
    ) -> Result<VerifiedEvidence, VerifyError> {
        self.appraise_certificate(role, cert_der, expected_nonce)
            .verdict
    }

    /// Like [`Verifier::verify_certificate`], also returning what the evidence claims even
    /// when it is refused (for `cella attest`).
    pub fn appraise_certificate(
        &self,
        role: &str,
        cert_der: &[u8],
        expected_nonce: Option<&[u8]>,
    ) -> Appraisal {
        let mut claimed = None;
        let verdict = self
            .appraise(role, cert_der, expected_nonce, &mut claimed)
            .map_err(|step| match step {
                Step::Refused(reason) => VerifyError::Refused {
                    role: role.to_owned(),
                    reason,
                },
                Step::Config(problem) => VerifyError::Config {
                    role: role.to_owned(),
                    problem,
                },
            });
        Appraisal { claimed, verdict }
    }

    fn appraise(
        &self,
        role_name: &str,
        cert_der: &[u8],
        expected_nonce: Option<&[u8]>,
        claimed: &mut Option<EvidenceSummary>,
    ) -> Result<VerifiedEvidence, Step> {
        let role = self
            .policy
            .role(role_name)
            .ok_or(Step::Config(ConfigProblem::UnknownRole))?;
        let now = self.clock.now();
        let now_secs = now.as_secs();

        let cert = RaTlsCert::parse(cert_der)?;
        if now_secs.saturating_add(MAX_CLOCK_SKEW.as_secs()) < cert.not_before
            || now_secs > cert.not_after
        {
            return Err(FreshnessError::CertificateValidity {
                not_before: cert.not_before,
                not_after: cert.not_after,
                now: now_secs,
            }
            .into());
        }
        let bound = cert.bound_evidence()?;

        let (verified, issued_at) = match &bound.evidence {
            Evidence::Sim(bytes) => {
                let sim = SimEvidence::parse(bytes).map_err(BindingError::from)?;
                let issued_at = sim.statement.issued_at;
                let mut summary = EvidenceSummary {
                    platform: Platform::Sim,
                    measurement: sim.statement.measurement,
                    mr_signer: None,
                    isv_prod_id_svn: None,
                    tcb_status: None,
                    advisory_ids: Vec::new(),
                    debug: sim.statement.debug,
                    issued_at: issued_at.as_secs(),
                    age_secs: now_secs.saturating_sub(issued_at.as_secs()),
                    sim_signer: Some(sim.signer),
                    authenticated: false,
                };
                *claimed = Some(summary.clone());
                if !role.allow_simulation {
                    return Err(PolicyViolation::SimulationNotAllowed.into());
                }
                sim.verify(&role.trusted_sim_keys)?;
                summary.authenticated = true;
                *claimed = Some(summary);
                role.check_sim(&sim.statement)?;
                (
                    VerifiedEvidence {
                        role: role_name.to_owned(),
                        platform: Platform::Sim,
                        measurement: sim.statement.measurement,
                        sgx: None,
                        sim_signer: Some(sim.signer),
                        debug: sim.statement.debug,
                        issued_at,
                        verified_at: now,
                        report_data: sim.statement.report_data,
                        nonce: bound.nonce.clone(),
                        spki_der: cert.spki_der.clone(),
                        extension: bound.extension,
                    },
                    issued_at,
                )
            }
            Evidence::SgxDcapQuote(quote) => {
                let issued_at = crate::dcap::unix(cert.not_before);
                *claimed = unverified_sgx_summary(quote, issued_at, now_secs);
                let report = self.dcap.verify(quote, now).map_err(|e| match e {
                    DcapError::Quote(q) => Step::Refused(q.into()),
                    DcapError::Collateral(c) => Step::Config(c.into()),
                })?;
                if report.report_data != bound.report_data {
                    return Err(BindingError::ReportData("verified quote's claims").into());
                }
                *claimed = Some(EvidenceSummary {
                    platform: Platform::SgxDcap,
                    measurement: report.mr_enclave,
                    mr_signer: Some(report.mr_signer),
                    isv_prod_id_svn: Some((report.isv_prod_id, report.isv_svn)),
                    tcb_status: Some(report.tcb_status),
                    advisory_ids: report.advisory_ids.clone(),
                    debug: report.debug,
                    issued_at: issued_at.as_secs(),
                    age_secs: now_secs.saturating_sub(issued_at.as_secs()),
                    sim_signer: None,
                    authenticated: true,
                });
                role.check_sgx(&report)?;
                (
                    VerifiedEvidence {
                        role: role_name.to_owned(),
                        platform: Platform::SgxDcap,
                        measurement: report.mr_enclave,
                        sgx: Some(SgxIdentity {
                            mr_signer: report.mr_signer,
                            isv_prod_id: report.isv_prod_id,
                            isv_svn: report.isv_svn,
                            tcb_status: report.tcb_status,
                            advisory_ids: report.advisory_ids.clone(),
                        }),
                        sim_signer: None,
                        debug: report.debug,
                        issued_at,
                        verified_at: now,
                        report_data: report.report_data,
                        nonce: bound.nonce.clone(),
                        spki_der: cert.spki_der.clone(),
                        extension: bound.extension,
                    },
                    issued_at,
                )
            }
        };

        let issued = issued_at.as_secs();
        if issued > now_secs.saturating_add(MAX_CLOCK_SKEW.as_secs()) {
            return Err(FreshnessError::FromTheFuture {
                ahead_secs: issued - now_secs,
            }
            .into());
        }
        let age_secs = now_secs.saturating_sub(issued);
        if age_secs > role.max_evidence_age_secs {
            return Err(FreshnessError::TooOld {
                age_secs,
                max_secs: role.max_evidence_age_secs,
            }
            .into());
        }
        if let Some(expected) = expected_nonce {
            match &bound.nonce {
                None => return Err(FreshnessError::NonceMissing.into()),
                Some(nonce) if nonce.as_slice() != expected => {
                    return Err(FreshnessError::NonceMismatch.into());
                }
                Some(_) => {}
            }
        }
        Ok(verified)
    }
}

fn unverified_sgx_summary(quote: &[u8], issued_at: UnixTime, now: u64) -> Option<EvidenceSummary> {
    let parsed = dcap_qvl::quote::Quote::parse(quote).ok()?;
    let report = parsed.report.as_sgx()?;
    Some(EvidenceSummary {
        platform: Platform::SgxDcap,
        measurement: Measurement(report.mr_enclave),
        mr_signer: Some(Measurement(report.mr_signer)),
        isv_prod_id_svn: Some((report.isv_prod_id, report.isv_svn)),
        tcb_status: None,
        advisory_ids: Vec::new(),
        debug: report.attributes[0] & 0x02 != 0,
        issued_at: issued_at.as_secs(),
        age_secs: now.saturating_sub(issued_at.as_secs()),
        sim_signer: None,
        authenticated: false,
    })
}
