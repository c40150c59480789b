//! The client commands. Each returns a [`Report`](crate::output::Report) that `main`
//! prints as JSON or text; none prints on its own except `task watch`, which streams.

pub(crate) mod attest;
pub(crate) mod audit;
pub(crate) mod completions;
pub(crate) mod file;
pub(crate) mod function;
pub(crate) mod image;
pub(crate) mod login;
pub(crate) mod node;
pub(crate) mod receipt;
pub(crate) mod task;
pub(crate) mod user;

use std::path::PathBuf;

use cella_client::Client;

use crate::session::{Session, now_ms};

/// What every command may need: where the session lives and the output mode.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The session directory (`$CELLA_HOME`).
    pub(crate) home: PathBuf,
    /// `--json` was given.
    pub(crate) json: bool,
}

impl Ctx {
    /// The saved session; fails when absent or expired.
    pub(crate) fn session(&self) -> anyhow::Result<Session> {
        Session::load_valid(&self.home, now_ms())
    }

    /// The saved session and a client logged in with it.
    pub(crate) async fn client(&self) -> anyhow::Result<(Session, Client)> {
        let session = self.session()?;
        let client = session.client().await?;
        Ok((session, client))
    }
}
