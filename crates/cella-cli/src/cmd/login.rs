//! `cella login` and `cella logout`.

use std::path::PathBuf;

use anyhow::Context;
use cella_client::{Client, ServerTrust};
use serde_json::json;

use crate::cmd::Ctx;
use crate::output::{Report, format_ms};
use crate::parse;
use crate::secrets::{PasswordSource, read_password};
use crate::session::{Session, now_ms};

/// Arguments of `cella login`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoginArgs {
    /// Node address: host:port or https://host:port.
    #[arg(long, value_name = "ADDR")]
    pub(crate) addr: String,
    /// The node's certificate to pin (its <data_dir>/tls/cert.pem; it changes at every
    /// start and renewal of the node: prefer --policy).
    #[arg(long, value_name = "PEM_PATH", required_unless_present = "policy")]
    pub(crate) cert: Option<PathBuf>,
    /// Attest the node under this attestation policy instead of pinning its certificate
    /// (e.g. its <data_dir>/tls/attestation-policy.sim.toml); saved with the session.
    #[arg(long, value_name = "FILE", conflicts_with = "cert")]
    pub(crate) policy: Option<PathBuf>,
    /// DCAP collateral JSON for verifying an SGX node's quote (repeatable, one per
    /// platform FMSPC); the paths are saved with the session and the files re-read at
    /// every connection, so refreshing them needs no new login.
    #[arg(long, value_name = "FILE", conflicts_with = "cert")]
    pub(crate) collateral: Vec<PathBuf>,
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
    let collateral = crate::collateral::absolute(&args.collateral)?;
    let (trust, cert_pem, policy_toml) = match (&args.policy, &args.cert) {
        (Some(policy), _) => {
            let text = std::fs::read_to_string(policy)
                .with_context(|| format!("cannot read attestation policy {}", policy.display()))?;
            let parsed = cella_attest::Policy::from_toml_str(&text)
                .with_context(|| format!("attestation policy {}", policy.display()))?;
            let loaded = crate::collateral::load(&collateral)?;
            (
                ServerTrust::attested_with_collateral(parsed, loaded),
                String::new(),
                Some(text),
            )
        }
        (None, Some(cert)) => {
            let pem = std::fs::read_to_string(cert)
                .with_context(|| format!("cannot read certificate {}", cert.display()))?;
            (ServerTrust::pinned_pem(pem.as_bytes())?, pem, None)
        }
        (None, None) => anyhow::bail!("give --policy or --cert"),
    };
    let prompt = format!("Password for {}: ", args.user);
    let source = match (&args.password_file, args.password_stdin) {
        (Some(path), _) => PasswordSource::File(path),
        (None, true) => PasswordSource::Stdin,
        (None, false) => PasswordSource::Prompt(&prompt),
    };
    let password = read_password(source)?;
    let mut client = Client::connect_with_trust(&args.addr, trust).await?;
    let info = client.login(&args.user, &password).await?;
    let session = Session {
        addr: client.addr().to_owned(),
        cert_pem,
        policy_toml,
        collateral,
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
