//! `cella login` and `cella logout`.

use std::path::PathBuf;

use anyhow::Context;
use cella_client::{Client, ServerTrust};
use serde_json::json;

use crate::cmd::Ctx;
use crate::exit::Failure;
use crate::output::{Report, format_ms};
use crate::parse;
use crate::secrets::{PasswordSource, read_password};
use crate::session::{Session, now_ms};

/// Where `cella serve` says its attestation policy is: the `--policy` to give.
const POLICY_HINT: &str = "the node's attestation policy, whose path `cella serve` prints when it starts \
     (<data_dir>/tls/attestation-policy.sim.toml for a node in simulation)";

/// How to trust a node: attest it under a policy (the README's way) or pin its
/// certificate. Shared by `login` and the commands that take a node of their own.
#[derive(Debug, clap::Args)]
pub(crate) struct TrustArgs {
    /// Attest the node under this attestation policy: the file whose path `cella serve`
    /// prints when it starts (<data_dir>/tls/attestation-policy.sim.toml in simulation).
    #[arg(long, value_name = "FILE", conflicts_with = "cert")]
    pub(crate) policy: Option<PathBuf>,
    /// Pin the node's certificate instead (its <data_dir>/tls/cert.pem; it changes at
    /// every start and renewal of the node: prefer --policy).
    #[arg(long, value_name = "PEM_PATH")]
    pub(crate) cert: Option<PathBuf>,
    /// DCAP collateral JSON for verifying an SGX node's quote (repeatable, one per
    /// platform FMSPC); `login` saves the paths with the session and the files are
    /// re-read at every connection, so refreshing them needs no new login.
    #[arg(long, value_name = "FILE", conflicts_with = "cert")]
    pub(crate) collateral: Vec<PathBuf>,
}

/// A node's trust as given on the command line, loaded, in the forms a session saves.
pub(crate) struct Trust {
    /// For connecting.
    pub(crate) server: ServerTrust,
    /// The pinned certificate (empty when attesting).
    pub(crate) cert_pem: String,
    /// The attestation policy's text.
    pub(crate) policy_toml: Option<String>,
    /// The collateral files, absolute.
    pub(crate) collateral: Vec<PathBuf>,
}

impl TrustArgs {
    /// Whether `--policy` or `--cert` was given.
    pub(crate) fn given(&self) -> bool {
        self.policy.is_some() || self.cert.is_some()
    }

    /// Reads the policy (and collateral) or the certificate.
    ///
    /// # Errors
    ///
    /// [`Failure::Usage`] naming `--policy` and where a node prints it when neither is
    /// given (`command` says who needs it); an unreadable or invalid file, naming it.
    pub(crate) fn load(&self, command: &str) -> anyhow::Result<Trust> {
        let collateral = crate::collateral::absolute(&self.collateral)?;
        match (&self.policy, &self.cert) {
            (Some(policy), _) => {
                let text = std::fs::read_to_string(policy).with_context(|| {
                    format!("cannot read attestation policy {}", policy.display())
                })?;
                let parsed = cella_attest::Policy::from_toml_str(&text)
                    .with_context(|| format!("attestation policy {}", policy.display()))?;
                let loaded = crate::collateral::load(&collateral)?;
                Ok(Trust {
                    server: ServerTrust::attested_with_collateral(parsed, loaded),
                    cert_pem: String::new(),
                    policy_toml: Some(text),
                    collateral,
                })
            }
            (None, Some(cert)) => {
                let pem = std::fs::read_to_string(cert)
                    .with_context(|| format!("cannot read certificate {}", cert.display()))?;
                Ok(Trust {
                    server: ServerTrust::pinned_pem(pem.as_bytes())?,
                    cert_pem: pem,
                    policy_toml: None,
                    collateral,
                })
            }
            (None, None) => Err(Failure::Usage(format!(
                "{command} needs --policy FILE: {POLICY_HINT}; or --cert PEM_PATH to pin the node's certificate"
            ))
            .into()),
        }
    }
}

/// Arguments of `cella login`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoginArgs {
    /// Node address: host:port or https://host:port.
    #[arg(long, value_name = "ADDR")]
    pub(crate) addr: String,
    /// How to trust the node (one of --policy or --cert is needed).
    #[command(flatten)]
    pub(crate) trust: TrustArgs,
    /// User name.
    #[arg(long, value_name = "NAME", value_parser = parse::user_name)]
    pub(crate) user: String,
    /// Read the password from the first line of this file.
    #[arg(long, value_name = "F", conflicts_with = "password_stdin")]
    pub(crate) password_file: Option<PathBuf>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub(crate) password_stdin: bool,
}

/// Logs in and saves the session.
pub(crate) async fn login(ctx: &Ctx, args: LoginArgs) -> anyhow::Result<Report> {
    let trust = args.trust.load("cella login")?;
    let prompt = format!("Password for {}: ", args.user);
    let source = match (&args.password_file, args.password_stdin) {
        (Some(path), _) => PasswordSource::File(path),
        (None, true) => PasswordSource::Stdin,
        (None, false) => PasswordSource::Prompt(&prompt),
    };
    let password = read_password(source)?;
    let mut client = Client::connect_with_trust(&args.addr, trust.server).await?;
    let info = client.login(&args.user, &password).await?;
    let session = Session {
        addr: client.addr().to_owned(),
        cert_pem: trust.cert_pem,
        policy_toml: trust.policy_toml,
        collateral: trust.collateral,
        roles: info.roles.clone(),
        user: info.user.clone(),
        token: info.token.clone(),
        expires_at_ms: info.expires_at_ms,
    };
    let path = session.save(&ctx.home)?;
    Ok(Report::new(
        json!({
            "user": info.user,
            "addr": session.addr,
            "roles": info.roles,
            "expires_at": format_ms(info.expires_at_ms),
            "expires_at_ms": info.expires_at_ms,
            "session_file": path,
        }),
        format!(
            "logged in to {} as {} (roles: {})\nsession saved to {} (expires {})",
            session.addr,
            info.user,
            if info.roles.is_empty() {
                "none".to_owned()
            } else {
                info.roles.join(", ")
            },
            path.display(),
            format_ms(info.expires_at_ms)
        ),
    ))
}

/// Revokes the token on the node (when it is still valid) and deletes the session.
pub(crate) async fn logout(ctx: &Ctx) -> anyhow::Result<Report> {
    let Some(session) = Session::load(&ctx.home)? else {
        return Ok(Report::new(
            json!({ "logged_out": false, "revoked": false }),
            "not logged in; nothing to do",
        ));
    };
    let revoke = if session.expired(now_ms()) {
        Ok(false)
    } else {
        match session.client().await {
            Ok(mut client) => client.logout().await.map(|()| true).map_err(Into::into),
            Err(e) => Err(e),
        }
    };
    Session::remove(&ctx.home)?;
    let (revoked, note) = match revoke {
        Ok(true) => (true, "the token is revoked".to_owned()),
        Ok(false) => (false, "the token had expired".to_owned()),
        Err(e) => (
            false,
            format!(
                "revoking the token on the node failed ({e:#}); it stays valid until it expires"
            ),
        ),
    };
    Ok(Report::new(
        json!({ "logged_out": true, "user": session.user, "revoked": revoked, "note": note }),
        format!("logged out {}: {note}", session.user),
    ))
}

/// `cella whoami`: the saved session, read locally (the node is not asked: the token may
/// have been revoked since, which the next command would report).
pub(crate) fn whoami(ctx: &Ctx) -> anyhow::Result<Report> {
    let session = Session::load_valid(&ctx.home, now_ms())?;
    let trust = if session.policy_toml.is_some() {
        "attestation policy"
    } else {
        "pinned certificate"
    };
    let roles = if session.roles.is_empty() {
        "none recorded".to_owned()
    } else {
        session.roles.join(", ")
    };
    let path = crate::session::session_path(&ctx.home);
    Ok(Report::new(
        json!({
            "user": session.user,
            "roles": session.roles,
            "addr": session.addr,
            "trust": trust,
            "collateral": session.collateral,
            "expires_at": format_ms(session.expires_at_ms),
            "expires_at_ms": session.expires_at_ms,
            "session_file": path,
        }),
        format!(
            "{} on {} (roles: {roles})\nnode trusted by its {trust}, saved with the session in {}\nsession expires {}",
            session.user,
            session.addr,
            path.display(),
            format_ms(session.expires_at_ms)
        ),
    ))
}
