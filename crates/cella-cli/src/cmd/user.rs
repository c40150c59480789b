//! `cella user register|list|passwd`.

use std::path::PathBuf;

use serde_json::json;

use crate::cmd::Ctx;
use crate::output::{Report, USER_HEADER, table, user_json, user_line};
use crate::parse;
use crate::secrets::{self, PasswordSource};

/// `cella user` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum UserCmd {
    /// Create a user (admin only). Without --password-file, a random password is
    /// generated and printed once.
    Register {
        /// The new user's name.
        #[arg(value_name = "NAME", value_parser = parse::user_name)]
        name: String,
        /// Roles: admin, function_owner, data_owner (repeat or separate with commas).
        #[arg(long = "role", value_name = "R", value_parser = parse::role,
              required = true, num_args = 1.., value_delimiter = ',')]
        roles: Vec<String>,
        /// Read the password from the first line of this file.
        #[arg(long, value_name = "F")]
        password_file: Option<PathBuf>,
    },
    /// List users (admin only).
    List,
    /// Change your password, or (admin) reset another user's with --user.
    Passwd {
        /// Whose password to reset (admin only); default: yours.
        #[arg(long, value_name = "NAME", value_parser = parse::user_name)]
        user: Option<String>,
        /// Read your current password from this file (default: prompt).
        #[arg(long, value_name = "F")]
        old_password_file: Option<PathBuf>,
        /// Read the new password from this file (default: prompt twice).
        #[arg(long, value_name = "F")]
        new_password_file: Option<PathBuf>,
    },
}

/// Runs a `cella user` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: UserCmd) -> anyhow::Result<Report> {
    let (session, client) = ctx.client().await?;
    match cmd {
        UserCmd::Register {
            name,
            roles,
            password_file,
        } => {
            let (password, generated) = match &password_file {
                Some(path) => (secrets::read_password(PasswordSource::File(path))?, false),
                None => (secrets::generate_password()?, true),
            };
            let user = client.register_user(&name, &password, &roles).await?;
            let mut value = json!({ "user": user_json(&user) });
            let mut human = format!("created user {}", user_line(&user));
            if generated {
                value["password"] = json!(password.as_str());
                human.push_str(&format!(
                    "\npassword: {} (shown only now: hand it over securely)",
                    password.as_str()
                ));
            }
            Ok(Report::new(value, human))
        }
        UserCmd::List => {
            let users = client.list_users().await?;
            Ok(Report::new(
                json!({ "users": users.iter().map(user_json).collect::<Vec<_>>() }),
                table(USER_HEADER, users.iter().map(user_line), "no users"),
            ))
        }
        UserCmd::Passwd {
            user,
            old_password_file,
            new_password_file,
        } => {
            let other = user.filter(|u| *u != session.user);
            let old = match (&other, &old_password_file) {
                // An admin resetting another user's password needs no old password.
                (Some(_), _) => zeroize::Zeroizing::new(String::new()),
                (None, Some(path)) => secrets::read_password(PasswordSource::File(path))?,
                (None, None) => {
                    secrets::read_password(PasswordSource::Prompt("Current password: "))?
                }
            };
            let target = other.as_deref().unwrap_or(&session.user);
            let new = match &new_password_file {
                Some(path) => secrets::read_password(PasswordSource::File(path))?,
                None => secrets::prompt_new_password(target)?,
            };
            client.change_password(other.as_deref(), &old, &new).await?;
            Ok(Report::new(
                json!({ "user": target, "changed": true }),
                format!("password of {target} changed"),
            ))
        }
    }
}
