//! The saved login session: `$CELLA_HOME/session.json` (default `~/.cella/session.json`).
//!
//! The file holds a bearer token: whoever reads it acts as the user until the token
//! expires. So the directory is created 0700, the file is written 0600 through a
//! temporary file that never has wider permissions, and loading refuses an expired
//! session rather than sending a token the node will reject.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::exit::Failure;
use crate::output::format_ms;

/// Environment variable naming the directory that holds `session.json`.
pub(crate) const HOME_ENV: &str = "CELLA_HOME";
/// File name of the session inside that directory.
const SESSION_FILE: &str = "session.json";
/// Mode of the session file: owner read/write only, because it holds a token.
const FILE_MODE: u32 = 0o600;
/// Mode of the session directory: owner only.
const DIR_MODE: u32 = 0o700;

/// A saved login: where the node is, how to trust it, and the session token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// Node address, `host:port`.
    pub(crate) addr: String,
    /// The node's pinned certificate, PEM (empty when the session attests the node).
    pub(crate) cert_pem: String,
    /// The attestation policy the node is checked against at every connection (TOML);
    /// when present, it is used instead of the pinned certificate, which changes at every
    /// start and renewal of the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy_toml: Option<String>,
    /// DCAP collateral files (absolute paths) for verifying an SGX node under the
    /// policy, re-read at every connection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) collateral: Vec<PathBuf>,
    /// The user logged in.
    pub(crate) user: String,
    /// The user's roles when it logged in (shown by `cella whoami`; the node decides).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) roles: Vec<String>,
    /// The bearer token (secret).
    pub(crate) token: String,
    /// When the token expires, milliseconds since the Unix epoch.
    pub(crate) expires_at_ms: i64,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The directory holding the session: `$CELLA_HOME`, else `$HOME/.cella`.
pub(crate) fn cella_home() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cella")),
        None => bail!("cannot find the session directory: set {HOME_ENV} or HOME"),
    }
}

/// The session file inside `home`.
pub(crate) fn session_path(home: &Path) -> PathBuf {
    home.join(SESSION_FILE)
}

impl Session {
    /// Whether the token has expired at `now_ms`.
    pub(crate) fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms <= now_ms
    }

    /// Writes the session to `home/session.json` with mode 0600 (directory 0700),
    /// replacing any earlier one atomically.
    pub(crate) fn save(&self, home: &Path) -> anyhow::Result<PathBuf> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        // An existing directory keeps its mode from DirBuilder; tighten it.
        fs::set_permissions(home, fs::Permissions::from_mode(DIR_MODE))
            .with_context(|| format!("cannot set mode 0700 on {}", home.display()))?;
        let path = session_path(home);
        let tmp = home.join(format!(".{SESSION_FILE}.{}.tmp", std::process::id()));
        let json = serde_json::to_vec_pretty(self).context("cannot encode the session")?;
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            fs::remove_file(&tmp).ok();
            return Err(e).with_context(|| format!("cannot write {}", path.display()));
        }
        Ok(path)
    }

    /// Reads `home/session.json`, `None` when there is none. Does not check expiry.
    pub(crate) fn load(home: &Path) -> anyhow::Result<Option<Session>> {
        let path = session_path(home);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if let Ok(meta) = fs::metadata(&path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "session file has mode {mode:o}: it holds a secret token, run chmod 600"
                );
            }
        }
        let session = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a valid session file; run cella login again",
                path.display()
            )
        })?;
        Ok(Some(session))
    }

    /// Reads the session and refuses an absent or expired one.
    pub(crate) fn load_valid(home: &Path, now_ms: i64) -> anyhow::Result<Session> {
        match Self::load(home)? {
            None => Err(Failure::NotLoggedIn("not logged in: run cella login".to_owned()).into()),
            Some(s) if s.expired(now_ms) => Err(Failure::NotLoggedIn(format!(
                "not logged in: the session of {} expired at {}; run cella login",
                s.user,
                format_ms(s.expires_at_ms)
            ))
            .into()),
            Some(s) => Ok(s),
        }
    }

    /// Deletes the session file; `false` when there was none.
    pub(crate) fn remove(home: &Path) -> anyhow::Result<bool> {
        let path = session_path(home);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
        }
    }

    /// How the session's node is trusted: its attestation policy, or the pinned
    /// certificate.
    pub(crate) fn trust(&self) -> anyhow::Result<cella_client::ServerTrust> {
        match &self.policy_toml {
            Some(text) => {
                let policy = cella_attest::Policy::from_toml_str(text)
                    .context("the session's attestation policy is invalid; run cella login")?;
                let collateral = crate::collateral::load(&self.collateral)
                    .context("the session's collateral; refresh the file or run cella login")?;
                Ok(cella_client::ServerTrust::attested_with_collateral(
                    policy, collateral,
                ))
            }
            None => Ok(cella_client::ServerTrust::pinned_pem(
                self.cert_pem.as_bytes(),
            )?),
        }
    }

    /// A client for the session's node, carrying its token.
    pub(crate) async fn client(&self) -> anyhow::Result<cella_client::Client> {
        let client = cella_client::Client::connect_with_trust(&self.addr, self.trust()?).await?;
        Ok(client.with_token(&self.token)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at_ms: i64) -> Session {
        Session {
            addr: "localhost:7443".into(),
            cert_pem: "-----BEGIN CERTIFICATE-----\n".into(),
            policy_toml: None,
            collateral: Vec::new(),
            user: "alice".into(),
            roles: vec!["data_owner".into()],
            token: "secret-token".into(),
            expires_at_ms,
        }
    }

    #[test]
    fn saved_with_private_modes_and_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("cella-home");
        let s = session(now_ms() + 60_000);
        let path = s.save(&home).unwrap();
        let file_mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        let dir_mode = fs::metadata(&home).unwrap().permissions().mode() & 0o777;
        assert_eq!(file_mode, 0o600);
        assert_eq!(dir_mode, 0o700);
        assert_eq!(Session::load_valid(&home, now_ms()).unwrap(), s);
        // Saving again replaces it and keeps the mode; no temporary file is left.
        session(now_ms() + 1).save(&home).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(&home).unwrap().count(), 1);
        assert!(!format!("{s:?}").contains("secret-token"));
    }

    #[test]
    fn an_existing_open_directory_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        session(now_ms() + 60_000).save(dir.path()).unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn absent_or_expired_sessions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Session::load_valid(dir.path(), now_ms()).unwrap_err();
        assert_eq!(err.to_string(), "not logged in: run cella login");

        session(now_ms() - 1).save(dir.path()).unwrap();
        let err = Session::load_valid(dir.path(), now_ms()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("not logged in: the session of alice expired"),
            "{text}"
        );
        assert!(text.ends_with("run cella login"), "{text}");
        // The expired session is still readable (logout uses it).
        assert!(Session::load(dir.path()).unwrap().is_some());
        assert!(Session::remove(dir.path()).unwrap());
        assert!(!Session::remove(dir.path()).unwrap());
    }

    #[test]
    fn a_corrupt_session_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(session_path(dir.path()), b"{not json").unwrap();
        let err = Session::load_valid(dir.path(), now_ms()).unwrap_err();
        assert!(err.to_string().contains("run cella login again"), "{err}");
    }
}
