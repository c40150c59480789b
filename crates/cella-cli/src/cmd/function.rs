//! `cella function register|get|list|update|disable|delete`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, bail};
use cella_client::proto;
use serde_json::json;

use crate::cmd::Ctx;
use crate::output::{FUNCTION_HEADER, Report, function_json, function_row, function_text, table};
use crate::parse;

/// The executor families, as the CLI spells them.
const EXECUTORS: [&str; 3] = ["builtin", "wasm", "libos"];
/// Instance reuse modes of libos functions.
const REUSE: [&str; 2] = ["never", "same-function"];

/// `cella function` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum FunctionCmd {
    /// Register a function (function_owner role).
    Register(RegisterArgs),
    /// Show a function you may use.
    Get {
        /// The function's id.
        #[arg(value_name = "ID", value_parser = parse::function_id)]
        id: String,
        /// Also fetch the payload (owner only) and write it to this file.
        #[arg(long, value_name = "FILE")]
        payload_out: Option<PathBuf>,
    },
    /// List the functions you may use.
    List {
        /// Only your own functions.
        #[arg(long)]
        mine: bool,
    },
    /// Change a function's spec or payload (owner only); unset flags keep their value.
    Update(UpdateArgs),
    /// Disable a function: no new tasks, no invocations (owner only).
    Disable {
        /// The function's id.
        #[arg(value_name = "ID", value_parser = parse::function_id)]
        id: String,
    },
    /// Delete a function no unfinished task uses (owner only).
    Delete {
        /// The function's id.
        #[arg(value_name = "ID", value_parser = parse::function_id)]
        id: String,
    },
}

/// The payload: a file, or the name of a builtin.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct PayloadArgs {
    /// The payload file: the Wasm module (wasm) or the program (libos).
    #[arg(long, value_name = "FILE", conflicts_with = "builtin")]
    pub(crate) payload: Option<PathBuf>,
    /// The builtin function's name (implies --executor builtin).
    #[arg(long, value_name = "NAME")]
    pub(crate) builtin: Option<String>,
}

/// Who may use the function.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct VisibilityArgs {
    /// Everyone may create tasks with it.
    #[arg(long, conflicts_with = "allow")]
    pub(crate) public: bool,
    /// These users (and the owner) may create tasks with it; repeat or use commas.
    #[arg(long, value_name = "USER", value_parser = parse::user_name,
          num_args = 1.., value_delimiter = ',')]
    pub(crate) allow: Vec<String>,
}

/// Arguments of `cella function register`.
#[derive(Debug, clap::Args)]
pub(crate) struct RegisterArgs {
    /// A short name.
    #[arg(long)]
    pub(crate) name: String,
    /// What the function does.
    #[arg(long, default_value = "")]
    pub(crate) description: String,
    /// Executor family: builtin, wasm or libos (default with --builtin: builtin).
    #[arg(long, value_parser = EXECUTORS)]
    pub(crate) executor: Option<String>,
    #[command(flatten)]
    pub(crate) payload: PayloadArgs,
    /// Runtime image for libos functions, such as python3.
    #[arg(long, value_name = "R")]
    pub(crate) runtime: Option<String>,
    /// libos only: `same-function` lets an instance serve several tasks of this
    /// function, wiped in between (default `never`: a fresh instance per task).
    #[arg(long, value_name = "MODE", value_parser = REUSE)]
    pub(crate) reuse: Option<String>,
    /// An argument: name (required), name=default, or name=default:fixed.
    #[arg(long = "arg", value_name = "name[=default][:fixed]", value_parser = parse::arg_decl)]
    pub(crate) args: Vec<proto::ArgumentSpec>,
    /// An input slot; a trailing ? makes it optional.
    #[arg(long = "input", value_name = "slot[?]", value_parser = parse::input_slot_decl)]
    pub(crate) inputs: Vec<proto::SlotSpec>,
    /// An output slot.
    #[arg(long = "output", value_name = "slot", value_parser = parse::output_slot_decl)]
    pub(crate) outputs: Vec<proto::SlotSpec>,
    #[command(flatten)]
    pub(crate) visibility: VisibilityArgs,
    /// Maximum number of invocations (default: no limit).
    #[arg(long, value_name = "N")]
    pub(crate) quota: Option<u64>,
    /// Most bytes all outputs of one task may hold together (default: the node's cap;
    /// a node refuses more than its own).
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_output_bytes: Option<u64>,
}

/// Arguments of `cella function update`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpdateArgs {
    /// The function's id.
    #[arg(value_name = "ID", value_parser = parse::function_id)]
    pub(crate) id: String,
    /// New name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// New description.
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// New executor family.
    #[arg(long, value_parser = EXECUTORS)]
    pub(crate) executor: Option<String>,
    /// New payload (changing it voids the approvals of tasks that use the function).
    #[command(flatten)]
    pub(crate) payload: PayloadArgs,
    /// New runtime image (libos).
    #[arg(long, value_name = "R")]
    pub(crate) runtime: Option<String>,
    /// New instance reuse mode (libos): never or same-function. Changing it voids the
    /// approvals of tasks that use the function.
    #[arg(long, value_name = "MODE", value_parser = REUSE)]
    pub(crate) reuse: Option<String>,
    /// Replace the arguments with these.
    #[arg(long = "arg", value_name = "name[=default][:fixed]", value_parser = parse::arg_decl)]
    pub(crate) args: Vec<proto::ArgumentSpec>,
    /// Remove every argument.
    #[arg(long, conflicts_with = "args")]
    pub(crate) no_args: bool,
    /// Replace the input slots with these.
    #[arg(long = "input", value_name = "slot[?]", value_parser = parse::input_slot_decl)]
    pub(crate) inputs: Vec<proto::SlotSpec>,
    /// Remove every input slot.
    #[arg(long, conflicts_with = "inputs")]
    pub(crate) no_inputs: bool,
    /// Replace the output slots with these.
    #[arg(long = "output", value_name = "slot", value_parser = parse::output_slot_decl)]
    pub(crate) outputs: Vec<proto::SlotSpec>,
    /// Remove every output slot.
    #[arg(long, conflicts_with = "outputs")]
    pub(crate) no_outputs: bool,
    #[command(flatten)]
    pub(crate) visibility: VisibilityArgs,
    /// Only the owner may use it.
    #[arg(long, conflicts_with_all = ["public", "allow"])]
    pub(crate) private: bool,
    /// New invocation quota.
    #[arg(long, value_name = "N")]
    pub(crate) quota: Option<u64>,
    /// Remove the quota.
    #[arg(long, conflicts_with = "quota")]
    pub(crate) no_quota: bool,
    /// New output cap of a task, in bytes (within the node's).
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_output_bytes: Option<u64>,
    /// Use the node's output cap.
    #[arg(long, conflicts_with = "max_output_bytes")]
    pub(crate) node_output_cap: bool,
}

/// Checks a spec with the same rules as the node, so mistakes show before upload.
pub(crate) fn validate_spec(spec: &proto::FunctionSpec) -> anyhow::Result<()> {
    let executor: cella_types::ExecutorKind = spec.executor.parse()?;
    let visibility = if spec.public {
        cella_types::Visibility::Public
    } else {
        let users = spec
            .allowed_users
            .iter()
            .map(|u| u.parse())
            .collect::<Result<BTreeSet<_>, _>>()?;
        cella_types::Visibility::Allowlist(users)
    };
    let slot = |s: &proto::SlotSpec| cella_types::SlotSpec {
        name: s.name.clone(),
        optional: s.optional,
    };
    let domain = cella_types::FunctionSpec {
        name: spec.name.clone(),
        description: spec.description.clone(),
        executor,
        runtime: (!spec.runtime.is_empty()).then(|| spec.runtime.clone()),
        reuse: spec.reuse.parse()?,
        arguments: spec
            .arguments
            .iter()
            .map(|a| cella_types::ArgumentSpec {
                name: a.name.clone(),
                default: a.default_value.clone(),
                overridable: a.overridable,
            })
            .collect(),
        inputs: spec.inputs.iter().map(slot).collect(),
        outputs: spec.outputs.iter().map(slot).collect(),
        visibility,
        quota: spec.quota,
        max_output_bytes: spec.max_output_bytes,
    };
    domain.validate()?;
    Ok(())
}

/// The payload bytes and the executor they imply (`builtin` for `--builtin`).
fn read_payload(p: &PayloadArgs) -> anyhow::Result<Option<(Vec<u8>, Option<&'static str>)>> {
    if let Some(name) = &p.builtin {
        return Ok(Some((name.as_bytes().to_vec(), Some("builtin"))));
    }
    if let Some(path) = &p.payload {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read payload {}", path.display()))?;
        return Ok(Some((bytes, None)));
    }
    Ok(None)
}

/// Builds the spec of `cella function register`.
pub(crate) fn register_spec(args: &RegisterArgs) -> anyhow::Result<(proto::FunctionSpec, Vec<u8>)> {
    let Some((payload, implied)) = read_payload(&args.payload)? else {
        bail!("give the function's payload: --payload FILE or --builtin NAME");
    };
    let executor = match (args.executor.as_deref(), implied) {
        (Some(e), Some(i)) if e != i => bail!("--builtin needs --executor builtin, not {e}"),
        (Some(e), _) => e.to_owned(),
        (None, Some(i)) => i.to_owned(),
        (None, None) => bail!("--payload needs --executor wasm or --executor libos"),
    };
    let spec = proto::FunctionSpec {
        name: args.name.clone(),
        description: args.description.clone(),
        executor,
        runtime: args.runtime.clone().unwrap_or_default(),
        reuse: args.reuse.clone().unwrap_or_default(),
        arguments: args.args.clone(),
        inputs: args.inputs.clone(),
        outputs: args.outputs.clone(),
        public: args.visibility.public,
        allowed_users: args.visibility.allow.clone(),
        quota: args.quota,
        max_output_bytes: args.max_output_bytes,
    };
    validate_spec(&spec)?;
    Ok((spec, payload))
}

/// Applies `cella function update`'s flags to the current spec.
pub(crate) fn updated_spec(
    mut spec: proto::FunctionSpec,
    args: &UpdateArgs,
) -> anyhow::Result<(proto::FunctionSpec, Option<Vec<u8>>)> {
    let payload = read_payload(&args.payload)?;
    if let Some(name) = &args.name {
        spec.name = name.clone();
    }
    if let Some(description) = &args.description {
        spec.description = description.clone();
    }
    match (args.executor.as_deref(), payload.as_ref().and_then(|p| p.1)) {
        (Some(e), Some(i)) if e != i => bail!("--builtin needs --executor builtin, not {e}"),
        (Some(e), _) | (None, Some(e)) => spec.executor = e.to_owned(),
        (None, None) => {}
    }
    if let Some(runtime) = &args.runtime {
        spec.runtime = runtime.clone();
    }
    if let Some(reuse) = &args.reuse {
        spec.reuse = reuse.clone();
    }
    if args.no_args || !args.args.is_empty() {
        spec.arguments = args.args.clone();
    }
    if args.no_inputs || !args.inputs.is_empty() {
        spec.inputs = args.inputs.clone();
    }
    if args.no_outputs || !args.outputs.is_empty() {
        spec.outputs = args.outputs.clone();
    }
    if args.visibility.public {
        spec.public = true;
        spec.allowed_users.clear();
    } else if !args.visibility.allow.is_empty() {
        spec.public = false;
        spec.allowed_users = args.visibility.allow.clone();
    } else if args.private {
        spec.public = false;
        spec.allowed_users.clear();
    }
    if args.no_quota {
        spec.quota = None;
    } else if args.quota.is_some() {
        spec.quota = args.quota;
    }
    if args.node_output_cap {
        spec.max_output_bytes = None;
    } else if args.max_output_bytes.is_some() {
        spec.max_output_bytes = args.max_output_bytes;
    }
    validate_spec(&spec)?;
    Ok((spec, payload.map(|p| p.0)))
}

/// Runs a `cella function` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: FunctionCmd) -> anyhow::Result<Report> {
    // Check local input before connecting.
    let prepared = match &cmd {
        FunctionCmd::Register(args) => Some(register_spec(args)?),
        _ => None,
    };
    let (_, client) = ctx.client().await?;
    let shown = |f: &proto::FunctionInfo| {
        Report::new(json!({ "function": function_json(f) }), function_text(f))
    };
    match cmd {
        FunctionCmd::Register(_) => {
            let Some((spec, payload)) = prepared else {
                bail!("internal error: register spec not prepared");
            };
            let f = client.register_function(spec, payload).await?;
            let mut report = shown(&f);
            report.human = format!("registered {}", report.human);
            Ok(report)
        }
        FunctionCmd::Get { id, payload_out } => {
            let f = client.get_function(&id, payload_out.is_some()).await?;
            let mut report = shown(&f);
            if let Some(path) = payload_out {
                std::fs::write(&path, &f.payload)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                report.json["payload_file"] = json!(path);
                report.human.push_str(&format!(
                    "\n  payload written to {} ({} bytes)",
                    path.display(),
                    f.payload.len()
                ));
            }
            Ok(report)
        }
        FunctionCmd::List { mine } => {
            let functions = client.list_functions(mine).await?;
            Ok(Report::new(
                json!({ "functions": functions.iter().map(function_json).collect::<Vec<_>>() }),
                table(
                    FUNCTION_HEADER,
                    functions.iter().map(function_row),
                    "no functions",
                ),
            ))
        }
        FunctionCmd::Update(args) => {
            let current = client.get_function(&args.id, false).await?;
            let spec = current.spec.unwrap_or_default();
            let (spec, payload) = updated_spec(spec, &args)?;
            let f = client.update_function(&args.id, spec, payload).await?;
            let mut report = shown(&f);
            report.human = format!("updated {}", report.human);
            Ok(report)
        }
        FunctionCmd::Disable { id } => {
            let f = client.disable_function(&id).await?;
            Ok(shown(&f))
        }
        FunctionCmd::Delete { id } => {
            client.delete_function(&id).await?;
            Ok(Report::new(
                json!({ "function_id": id, "deleted": true }),
                format!("deleted {id}"),
            ))
        }
    }
}
