//! `cella completions SHELL`: the shell completion script, generated from the command
//! tree itself by `clap_complete`, so it cannot drift from the flags.

use clap::CommandFactory;
use serde_json::json;

use crate::output::Report;

/// `cella completions` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// The completion script for `args.shell`; the text form is the script itself, e.g.
/// `cella completions bash > /etc/bash_completion.d/cella`.
pub(crate) fn run(args: &CompletionsArgs) -> anyhow::Result<Report> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut crate::Cli::command(), "cella", &mut script);
    let script = String::from_utf8(script)?;
    Ok(Report::new(
        json!({ "shell": args.shell.to_string(), "script": script }),
        script.trim_end().to_owned(),
    ))
}
