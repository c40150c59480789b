//! The attestation policy, `attestation-policy.toml`: per role, what evidence is accepted.
//!
//! ```toml
//! version = 1
//!
//! [roles.node]
//! max_evidence_age_secs = 86400          # required
//! allow_debug = false                    # default false
//! allow_simulation = false               # default false
//! trusted_sim_keys = []                  # Ed25519 keys (hex) allowed to sign sim evidence
//! sim_measurements = []                  # accepted simulation measurements (hex SHA-256)
//! mr_enclave = ["<64 hex>"]              # accepted SGX MRENCLAVE values
//! accepted_tcb_statuses = ["UpToDate"]   # required if any SGX measurement is accepted
//! accepted_advisory_ids = []             # every advisory of a quote must be listed
//!
//! [[roles.node.mr_signer]]               # or: accept by signer and product, minimum SVN
//! mr_signer = "<64 hex>"
//! isv_prod_id = 1
//! min_isv_svn = 3
//! ```
//!
//! Fail closed: unknown fields are refused, a role that accepts no measurement is refused,
//! SGX measurements without accepted TCB statuses are refused, and simulation evidence is
//! accepted only with `allow_simulation = true`, a listed key and a listed measurement.
//! Policies may be signed by auditors: see [`crate::auditors`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::dcap::{DcapReport, TcbStatus};
use crate::ed25519::Ed25519PublicKey;
use crate::measurement::{Measurement, sha256};
use crate::sim::SimStatement;

/// The only version of the policy format.
pub const POLICY_VERSION: u32 = 1;
/// Largest policy file accepted: policies are hand-written lists; 256 KiB is thousands of
/// measurements.
pub const MAX_POLICY_LEN: usize = 256 * 1024;
/// Most roles in one policy.
pub const MAX_ROLES: usize = 64;
/// Most entries in any one list of a role (measurements, keys, statuses, advisories).
pub const MAX_LIST_LEN: usize = 1024;
/// Longest role name.
pub const MAX_ROLE_NAME_LEN: usize = 64;
/// Largest `max_evidence_age_secs`: a year. Older evidence predates TCB recoveries and key
/// rotations it should reflect; a larger value is a configuration mistake.
pub const MAX_EVIDENCE_AGE_LIMIT_SECS: u64 = 366 * 24 * 3600;

/// Well-known role names.
pub mod roles {
    /// A Cella node, as seen by clients and other nodes.
    pub const NODE: &str = "node";
    /// A LibOS instance (sidecar), as seen by the execution worker.
    pub const LIBOS_INSTANCE: &str = "libos-instance";
    /// A client or execution worker authenticating to a node or an instance.
    pub const CLIENT: &str = "client";
}

/// Accept enclaves signed by `mr_signer`, for product `isv_prod_id`, at `min_isv_svn` or
/// later.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerRule {
    /// `MRSIGNER`.
    pub mr_signer: Measurement,
    /// `ISVPRODID`.
    pub isv_prod_id: u16,
    /// Lowest accepted `ISVSVN`.
    pub min_isv_svn: u16,
}

/// What one role accepts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePolicy {
    /// Oldest evidence accepted, in seconds.
    pub max_evidence_age_secs: u64,
    /// Accept debug enclaves / debuggable instances.
    #[serde(default)]
    pub allow_debug: bool,
    /// Accept simulation evidence (with a listed key and measurement).
    #[serde(default)]
    pub allow_simulation: bool,
    /// Keys allowed to sign simulation evidence.
    #[serde(default)]
    pub trusted_sim_keys: Vec<Ed25519PublicKey>,
    /// Accepted simulation measurements.
    #[serde(default)]
    pub sim_measurements: Vec<Measurement>,
    /// Accepted SGX `MRENCLAVE` values.
    #[serde(default)]
    pub mr_enclave: Vec<Measurement>,
    /// Accepted SGX signers.
    #[serde(default)]
    pub mr_signer: Vec<SignerRule>,
    /// Accepted TCB statuses of SGX platforms.
    #[serde(default)]
    pub accepted_tcb_statuses: Vec<TcbStatus>,
    /// Accepted Intel security advisories; a quote is refused if any of its advisories is
    /// not listed.
    #[serde(default)]
    pub accepted_advisory_ids: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    roles: BTreeMap<String, RolePolicy>,
}

/// Who vouches for a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Nobody: the policy was loaded without auditor signatures.
    Unsigned,
    /// At least `threshold` auditors of the trust root signed it.
    Signed {
        /// The names of the auditors whose signatures verified.
        auditors: Vec<String>,
        /// The trust root's threshold.
        threshold: usize,
    },
}

/// A parsed, validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    roles: BTreeMap<String, RolePolicy>,
    digest: [u8; 32],
    provenance: Provenance,
}

/// The policy is invalid (our configuration's fault).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Reading the file failed.
    #[error("reading policy {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Too large.
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not UTF-8.
    #[error("policy is not UTF-8")]
    NotUtf8,
    /// Not valid TOML, or unknown or missing fields.
    #[error("policy does not parse: {0}")]
    Parse(String),
    /// Unsupported version.
    #[error("policy version {0} is not supported (expected {POLICY_VERSION})")]
    Version(u32),
    /// No roles, or too many.
    #[error("policy must define between 1 and {MAX_ROLES} roles, it defines {0}")]
    RoleCount(usize),
    /// Bad role name.
    #[error(
        "role name {0:?} is invalid: use 1 to {MAX_ROLE_NAME_LEN} characters of a-z, 0-9 and '-'"
    )]
    RoleName(String),
    /// A role is unusable or contradictory.
    #[error("role {role:?}: {problem}")]
    Role {
        /// The role.
        role: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A list is too long.
    #[error("role {role:?}: a list has more than {MAX_LIST_LEN} entries")]
    ListTooLong {
        /// The role.
        role: String,
    },
}

/// Evidence is authentic but the role's policy does not accept it (the peer's fault).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyViolation {
    /// Simulation evidence under `allow_simulation = false`.
    #[error("simulation evidence is not allowed (allow_simulation = false)")]
    SimulationNotAllowed,
    /// A simulation measurement not listed.
    #[error("simulation measurement {0} is not in sim_measurements")]
    SimMeasurement(Measurement),
    /// An enclave not accepted by mr_enclave or mr_signer rules.
    #[error(
        "enclave mr_enclave {mr_enclave} (mr_signer {mr_signer}, isv_prod_id {isv_prod_id}, \
         isv_svn {isv_svn}) is not accepted by mr_enclave or mr_signer"
    )]
    Enclave {
        /// `MRENCLAVE`.
        mr_enclave: Measurement,
        /// `MRSIGNER`.
        mr_signer: Measurement,
        /// `ISVPRODID`.
        isv_prod_id: u16,
        /// `ISVSVN`.
        isv_svn: u16,
    },
    /// Debug evidence under `allow_debug = false`.
    #[error("debug enclave or instance is not allowed (allow_debug = false)")]
    Debug,
    /// TCB status not accepted.
    #[error("TCB status {status} is not in accepted_tcb_statuses {accepted:?}")]
    TcbStatus {
        /// The platform's status.
        status: TcbStatus,
        /// The accepted ones.
        accepted: Vec<TcbStatus>,
    },
    /// An advisory not accepted.
    #[error("security advisory {0} is not in accepted_advisory_ids")]
    Advisory(String),
}

fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROLE_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl RolePolicy {
    fn validate(&self, role: &str) -> Result<(), PolicyError> {
        let problem = |problem| PolicyError::Role {
            role: role.to_owned(),
            problem,
        };
        if self.max_evidence_age_secs == 0 {
            return Err(problem("max_evidence_age_secs must be positive"));
        }
        if self.max_evidence_age_secs > MAX_EVIDENCE_AGE_LIMIT_SECS {
            return Err(problem("max_evidence_age_secs is more than a year"));
        }
        let lens = [
            self.trusted_sim_keys.len(),
            self.sim_measurements.len(),
            self.mr_enclave.len(),
            self.mr_signer.len(),
            self.accepted_tcb_statuses.len(),
            self.accepted_advisory_ids.len(),
        ];
        if lens.iter().any(|&n| n > MAX_LIST_LEN) {
            return Err(PolicyError::ListTooLong {
                role: role.to_owned(),
            });
        }
        let accepts_sgx = !self.mr_enclave.is_empty() || !self.mr_signer.is_empty();
        let accepts_sim = self.allow_simulation && !self.sim_measurements.is_empty();
        if !accepts_sgx && !accepts_sim {
            return Err(problem(
                "accepts no measurement (list mr_enclave, mr_signer, or sim_measurements with \
                 allow_simulation = true)",
            ));
        }
        if accepts_sgx && self.accepted_tcb_statuses.is_empty() {
            return Err(problem(
                "accepts SGX measurements but no TCB status (set accepted_tcb_statuses)",
            ));
        }
        Ok(())
    }

    /// Check authentic simulation evidence against this role.
    ///
    /// # Errors
    ///
    /// The first [`PolicyViolation`] found.
    pub fn check_sim(&self, statement: &SimStatement) -> Result<(), PolicyViolation> {
        if !self.allow_simulation {
            return Err(PolicyViolation::SimulationNotAllowed);
        }
        if !self.sim_measurements.contains(&statement.measurement) {
            return Err(PolicyViolation::SimMeasurement(statement.measurement));
        }
        if statement.debug && !self.allow_debug {
            return Err(PolicyViolation::Debug);
        }
        Ok(())
    }

    /// Check a verified SGX quote against this role.
    ///
    /// # Errors
    ///
    /// The first [`PolicyViolation`] found.
    pub fn check_sgx(&self, report: &DcapReport) -> Result<(), PolicyViolation> {
        let by_enclave = self.mr_enclave.contains(&report.mr_enclave);
        let by_signer = self.mr_signer.iter().any(|rule| {
            rule.mr_signer == report.mr_signer
                && rule.isv_prod_id == report.isv_prod_id
                && report.isv_svn >= rule.min_isv_svn
        });
        if !by_enclave && !by_signer {
            return Err(PolicyViolation::Enclave {
                mr_enclave: report.mr_enclave,
                mr_signer: report.mr_signer,
                isv_prod_id: report.isv_prod_id,
                isv_svn: report.isv_svn,
            });
        }
        if report.debug && !self.allow_debug {
            return Err(PolicyViolation::Debug);
        }
        if !self.accepted_tcb_statuses.contains(&report.tcb_status) {
            return Err(PolicyViolation::TcbStatus {
                status: report.tcb_status,
                accepted: self.accepted_tcb_statuses.clone(),
            });
        }
        if let Some(id) = report
            .advisory_ids
            .iter()
            .find(|id| !self.accepted_advisory_ids.contains(id))
        {
            return Err(PolicyViolation::Advisory(id.clone()));
        }
        Ok(())
    }
}

impl Policy {
    /// Parse and validate an unsigned policy from the bytes of `attestation-policy.toml`.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] if the policy is too large, does not parse, has unknown fields, or a
    /// role is unusable.
    pub fn from_toml_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        if bytes.len() > MAX_POLICY_LEN {
            return Err(PolicyError::TooLarge {
                limit: MAX_POLICY_LEN,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| PolicyError::NotUtf8)?;
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        if file.version != POLICY_VERSION {
            return Err(PolicyError::Version(file.version));
        }
        if file.roles.is_empty() || file.roles.len() > MAX_ROLES {
            return Err(PolicyError::RoleCount(file.roles.len()));
        }
        for (name, role) in &file.roles {
            if !valid_role_name(name) {
                return Err(PolicyError::RoleName(name.clone()));
            }
            role.validate(name)?;
        }
        Ok(Self {
            roles: file.roles,
            digest: sha256(bytes),
            provenance: Provenance::Unsigned,
        })
    }

    /// [`Policy::from_toml_bytes`] for a string.
    ///
    /// # Errors
    ///
    /// As [`Policy::from_toml_bytes`].
    pub fn from_toml_str(text: &str) -> Result<Self, PolicyError> {
        Self::from_toml_bytes(text.as_bytes())
    }

    /// Read and parse an unsigned policy file.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Io`] if it cannot be read, else as [`Policy::from_toml_bytes`].
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        Self::from_toml_bytes(&read_bounded(path, MAX_POLICY_LEN)?)
    }

    /// The policy for `role`, if defined.
    pub fn role(&self, role: &str) -> Option<&RolePolicy> {
        self.roles.get(role)
    }

    /// The names of the roles defined.
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// SHA-256 of the policy file's bytes, for logs and receipts.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Who vouches for the policy.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    pub(crate) fn with_provenance(mut self, provenance: Provenance) -> Self {
        self.provenance = provenance;
        self
    }
}

/// Read at most `limit` bytes of `path`, failing if the file is larger.
pub(crate) fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, PolicyError> {
    use std::io::Read;
    let io = |source| PolicyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut out = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(io)?;
    if out.len() > limit {
        return Err(PolicyError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn policy(body: &str) -> Result<Policy, PolicyError> {
        Policy::from_toml_str(&format!("version = 1\n{body}"))
    }

    #[test]
    fn parses_a_full_role() {
        let p = policy(&format!(
            r#"
[roles.node]
max_evidence_age_secs = 3600
allow_debug = false
allow_simulation = true
trusted_sim_keys = ["{M}"]
sim_measurements = ["{M}"]
mr_enclave = ["{M}"]
accepted_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
accepted_advisory_ids = ["INTEL-SA-00615"]

[[roles.node.mr_signer]]
mr_signer = "{M}"
isv_prod_id = 1
min_isv_svn = 2
"#
        ))
        .unwrap();
        let role = p.role("node").unwrap();
        assert_eq!(role.max_evidence_age_secs, 3600);
        assert_eq!(role.mr_signer[0].min_isv_svn, 2);
        assert_eq!(
            role.accepted_tcb_statuses,
            [TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded]
        );
        assert_eq!(p.provenance(), &Provenance::Unsigned);
    }

    #[test]
    fn fails_closed() {
        let unknown = policy(&format!(
            "[roles.node]\nmax_evidence_age_secs = 1\nmr_enclave = [\"{M}\"]\naccepted_tcb_statuses = [\"UpToDate\"]\nallow_simulaton = true\n"
        ));
        assert!(matches!(unknown, Err(PolicyError::Parse(m)) if m.contains("allow_simulaton")));

        let nothing = policy("[roles.node]\nmax_evidence_age_secs = 1\n");
        assert!(matches!(nothing, Err(PolicyError::Role { .. })));

        // Simulation measurements without allow_simulation accept nothing.
        let sim_off = policy(&format!(
            "[roles.node]\nmax_evidence_age_secs = 1\nsim_measurements = [\"{M}\"]\n"
        ));
        assert!(matches!(sim_off, Err(PolicyError::Role { .. })));

        let no_tcb = policy(&format!(
            "[roles.node]\nmax_evidence_age_secs = 1\nmr_enclave = [\"{M}\"]\n"
        ));
        assert!(matches!(no_tcb, Err(PolicyError::Role { .. })));

        let no_age = policy(&format!(
            "[roles.node]\nallow_simulation = true\nsim_measurements = [\"{M}\"]\n"
        ));
        assert!(matches!(no_age, Err(PolicyError::Parse(_))));

        let bad_status = policy(&format!(
            "[roles.node]\nmax_evidence_age_secs = 1\nmr_enclave = [\"{M}\"]\naccepted_tcb_statuses = [\"Fine\"]\n"
        ));
        assert!(matches!(bad_status, Err(PolicyError::Parse(_))));

        assert!(matches!(
            Policy::from_toml_str("version = 2\n[roles.node]\nmax_evidence_age_secs = 1\n"),
            Err(PolicyError::Version(2))
        ));
        assert!(matches!(
            policy("roles = {}"),
            Err(PolicyError::RoleCount(0))
        ));
        assert!(matches!(
            policy(&format!(
                "[roles.Node]\nmax_evidence_age_secs = 1\nallow_simulation = true\nsim_measurements = [\"{M}\"]\n"
            )),
            Err(PolicyError::RoleName(_))
        ));
    }
}
