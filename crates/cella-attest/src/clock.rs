//! Time as the attestation code sees it.
//!
//! Evidence age, collateral validity and certificate validity are all judged against a
//! [`Clock`], so that tests (and offline audits with `--at`) can fix the time explicitly.
//! Production code uses [`SystemClock`].

use std::time::Duration;

use rustls_pki_types::UnixTime;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> UnixTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::now()
    }
}

/// A clock stopped at one instant: for verification "as of" a given time.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(UnixTime);

impl FixedClock {
    /// A clock that always reads `secs` seconds after the Unix epoch.
    pub fn at_unix_secs(secs: u64) -> Self {
        Self(UnixTime::since_unix_epoch(Duration::from_secs(secs)))
    }
}

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        self.0
    }
}
