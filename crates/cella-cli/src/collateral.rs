//! `--collateral FILE` (repeatable) of `cella attest`, `cella login` and
//! `cella task receipt --verify`: Intel DCAP collateral (PCK CRL, TCB info, QE identity and
//! their chains, one JSON file per platform family, as `cella_attest::dcap` loads it) for
//! verifying SGX quotes. Without collateral for the quote's platform, SGX evidence is
//! refused with "no collateral is configured for FMSPC …"; simulation evidence needs none.

use std::path::PathBuf;

use anyhow::Context;
use cella_attest::dcap::{Collateral, DcapVerifier, load_collateral};
use serde_json::{Value, json};

/// Loads every file in `paths`; an unreadable or malformed file is an error naming it.
pub(crate) fn load(paths: &[PathBuf]) -> anyhow::Result<Vec<Collateral>> {
    paths
        .iter()
        .map(|p| {
            load_collateral(p).with_context(|| {
                format!(
                    "--collateral {}: expected DCAP collateral JSON (as dcap-qvl or a PCCS \
                     client writes it, one file per platform FMSPC)",
                    p.display()
                )
            })
        })
        .collect()
}

/// A DCAP verifier holding `collateral`.
pub(crate) fn dcap_verifier(collateral: &[Collateral]) -> DcapVerifier {
    collateral
        .iter()
        .fold(DcapVerifier::new(), |d, c| d.with_collateral(c.clone()))
}

/// What was loaded, for reports: each file's FMSPC and validity window.
pub(crate) fn summary(paths: &[PathBuf], collateral: &[Collateral]) -> Vec<Value> {
    paths
        .iter()
        .zip(collateral)
        .map(|(path, c)| {
            let (from, until) = c.validity();
            json!({
                "file": path,
                "fmspc": hex(&c.fmspc()),
                "valid_from": from,
                "valid_until": until,
            })
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `paths` made absolute (against the current directory), so that a session saved with
/// them still finds them from elsewhere.
pub(crate) fn absolute(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    paths
        .iter()
        .map(|p| {
            std::path::absolute(p)
                .with_context(|| format!("--collateral {}: cannot resolve the path", p.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn sample(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../cella-attest/testdata")
            .join(name)
    }

    #[test]
    fn sample_collateral_loads_and_verifies_the_sample_quote() {
        let paths = [sample("sgx_quote_collateral.json")];
        let loaded = load(&paths).unwrap();
        let (from, until) = loaded[0].validity();
        let at = cella_attest::Clock::now(&cella_attest::clock::FixedClock::at_unix_secs(
            from + (until - from) / 2,
        ));
        let quote = std::fs::read(sample("sgx_quote")).unwrap();
        let report = dcap_verifier(&loaded).verify(&quote, at).unwrap();
        assert_eq!(
            report.mr_enclave.to_string(),
            "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
        );
        // Without it, the same quote is our configuration problem, named as such.
        let err = dcap_verifier(&[]).verify(&quote, at).unwrap_err();
        assert!(err.to_string().contains("no collateral"), "{err}");
        let s = summary(&paths, &loaded);
        assert_eq!(s[0]["fmspc"], "00A067110000");
        let abs = absolute(&[PathBuf::from("x.json")]).unwrap();
        assert!(abs[0].is_absolute());
    }

    #[test]
    fn a_malformed_or_missing_collateral_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad-collateral.json");
        std::fs::write(&bad, b"not json").unwrap();
        let err = load(&[sample("sgx_quote_collateral.json"), bad.clone()]).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("--collateral") && text.contains("bad-collateral.json"),
            "{text}"
        );
        assert!(text.contains("not DCAP collateral JSON"), "{text}");
        let err = load(&[dir.path().join("absent.json")]).unwrap_err();
        assert!(format!("{err:#}").contains("absent.json"), "{err:#}");
    }
}
