//! Conversions between the wire types of `cella.v1` and the domain model. Every untrusted
//! wire value that names something (an id, a digest, a user name) is parsed here, once,
//! into its type, with an error naming the field; the platform takes only the types.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::str::FromStr;

use cella_platform::files::FileView;
use cella_platform::tasks::TaskView;
use cella_proto::v1 as pb;
use cella_types::{
    ArgumentSpec, ExecutorKind, Function, FunctionSpec, Location, SlotSpec, TaskStatus, User,
    UserName, Visibility,
};
use tonic::Status;

use crate::status::invalid;

/// A wire string field as its domain type (an id, a digest, a user name), or
/// INVALID_ARGUMENT naming the field and what is wrong with the value.
pub(crate) fn parse<T>(field: &str, value: &str) -> Result<T, Status>
where
    T: FromStr,
    T::Err: Display,
{
    value.parse().map_err(|e| invalid(format!("{field}: {e}")))
}

/// An optional wire string field: empty means not given.
pub(crate) fn parse_opt<T>(field: &str, value: &str) -> Result<Option<T>, Status>
where
    T: FromStr,
    T::Err: Display,
{
    if value.is_empty() {
        Ok(None)
    } else {
        parse(field, value).map(Some)
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A wire function spec as a domain spec (validated later by the platform).
pub(crate) fn function_spec(spec: Option<pb::FunctionSpec>) -> Result<FunctionSpec, Status> {
    let spec = spec.ok_or_else(|| invalid("spec is missing"))?;
    let executor: ExecutorKind = spec
        .executor
        .parse()
        .map_err(|e: cella_types::SpecError| invalid(format!("spec.executor: {e}")))?;
    let visibility = if spec.public {
        if !spec.allowed_users.is_empty() {
            return Err(invalid("spec: a public function takes no allowed_users"));
        }
        Visibility::Public
    } else {
        let users: BTreeSet<UserName> = spec
            .allowed_users
            .iter()
            .map(|u| parse("spec.allowed_users", u))
            .collect::<Result<_, Status>>()?;
        Visibility::Allowlist(users)
    };
    Ok(FunctionSpec {
        name: spec.name,
        description: spec.description,
        executor,
        runtime: (!spec.runtime.is_empty()).then_some(spec.runtime),
        reuse: spec
            .reuse
            .parse()
            .map_err(|e: cella_types::SpecError| invalid(format!("spec.reuse: {e}")))?,
        arguments: spec
            .arguments
            .into_iter()
            .map(|a| ArgumentSpec {
                name: a.name,
                default: a.default_value,
                overridable: a.overridable,
            })
            .collect(),
        inputs: spec.inputs.into_iter().map(slot_spec).collect(),
        outputs: spec.outputs.into_iter().map(slot_spec).collect(),
        visibility,
        quota: spec.quota,
        max_output_bytes: spec.max_output_bytes,
    })
}

fn slot_spec(s: pb::SlotSpec) -> SlotSpec {
    SlotSpec {
        name: s.name,
        optional: s.optional,
    }
}

fn slot_spec_pb(s: &SlotSpec) -> pb::SlotSpec {
    pb::SlotSpec {
        name: s.name.clone(),
        optional: s.optional,
    }
}

/// A function on the wire.
pub(crate) fn function_info(f: &Function, payload: Option<Vec<u8>>) -> pb::FunctionInfo {
    let (public, allowed_users) = match &f.spec.visibility {
        Visibility::Public => (true, Vec::new()),
        Visibility::Allowlist(users) => (false, users.iter().map(ToString::to_string).collect()),
    };
    pb::FunctionInfo {
        function_id: f.id.to_string(),
        owner: f.owner.to_string(),
        spec: Some(pb::FunctionSpec {
            name: f.spec.name.clone(),
            description: f.spec.description.clone(),
            executor: f.spec.executor.to_string(),
            runtime: f.spec.runtime.clone().unwrap_or_default(),
            reuse: f.spec.reuse.as_str().to_owned(),
            arguments: f
                .spec
                .arguments
                .iter()
                .map(|a| pb::ArgumentSpec {
                    name: a.name.clone(),
                    default_value: a.default.clone(),
                    overridable: a.overridable,
                })
                .collect(),
            inputs: f.spec.inputs.iter().map(slot_spec_pb).collect(),
            outputs: f.spec.outputs.iter().map(slot_spec_pb).collect(),
            public,
            allowed_users,
            quota: f.spec.quota,
            max_output_bytes: f.spec.max_output_bytes,
        }),
        payload_digest: f.payload_digest.to_hex(),
        payload_len: f.payload_len,
        usage: f.usage,
        disabled: f.disabled,
        created_at_ms: ms(f.created_ms),
        updated_at_ms: ms(f.updated_ms),
        payload: payload.unwrap_or_default(),
    }
}

/// A user on the wire (never the password hash).
pub(crate) fn user_info(u: &User) -> pb::UserInfo {
    pb::UserInfo {
        name: u.name.to_string(),
        roles: u.roles.iter().map(ToString::to_string).collect(),
        created_at_ms: ms(u.created_ms),
    }
}

fn location(l: &Location) -> String {
    match l {
        Location::Blob => "blob".into(),
        Location::Url(u) => u.clone(),
    }
}

/// A file on the wire (never the key).
pub(crate) fn file_info(f: &FileView) -> pb::FileInfo {
    match f {
        FileView::Input(f) => pb::FileInfo {
            file_id: f.id.to_string(),
            owner: f.owner.to_string(),
            location: location(&f.location),
            schema: f.schema.as_str().into(),
            ciphertext_digest: f.ciphertext_digest.to_hex(),
            size: f.size,
            created_at_ms: ms(f.created_ms),
            written_by_task: String::new(),
        },
        FileView::Output(f) => pb::FileInfo {
            file_id: f.id.to_string(),
            owner: f.owner.to_string(),
            location: location(&f.location),
            schema: f.schema.as_str().into(),
            ciphertext_digest: f
                .content
                .as_ref()
                .map(|c| c.ciphertext_digest.to_hex())
                .unwrap_or_default(),
            size: f.content.as_ref().map_or(0, |c| c.size),
            created_at_ms: ms(f.created_ms),
            written_by_task: f
                .content
                .as_ref()
                .map(|c| c.task.to_string())
                .unwrap_or_default(),
        },
    }
}

/// A status on the wire.
pub(crate) fn status(s: TaskStatus) -> pb::TaskStatus {
    match s {
        TaskStatus::Created => pb::TaskStatus::Created,
        TaskStatus::DataAssigned => pb::TaskStatus::DataAssigned,
        TaskStatus::Approved => pb::TaskStatus::Approved,
        TaskStatus::Staged => pb::TaskStatus::Staged,
        TaskStatus::Running => pb::TaskStatus::Running,
        TaskStatus::Finished => pb::TaskStatus::Finished,
        TaskStatus::Failed => pb::TaskStatus::Failed,
        TaskStatus::Canceled => pb::TaskStatus::Canceled,
    }
}

/// A status from the wire (a filter's), refusing the unspecified value and unknown
/// numbers.
pub(crate) fn task_status(n: i32) -> Result<TaskStatus, Status> {
    let s = pb::TaskStatus::try_from(n)
        .map_err(|_| Status::invalid_argument(format!("unknown task status {n}")))?;
    Ok(match s {
        pb::TaskStatus::Unspecified => {
            return Err(Status::invalid_argument(
                "TASK_STATUS_UNSPECIFIED is not a status to filter by",
            ));
        }
        pb::TaskStatus::Created => TaskStatus::Created,
        pb::TaskStatus::DataAssigned => TaskStatus::DataAssigned,
        pb::TaskStatus::Approved => TaskStatus::Approved,
        pb::TaskStatus::Staged => TaskStatus::Staged,
        pb::TaskStatus::Running => TaskStatus::Running,
        pb::TaskStatus::Finished => TaskStatus::Finished,
        pb::TaskStatus::Failed => TaskStatus::Failed,
        pb::TaskStatus::Canceled => TaskStatus::Canceled,
    })
}

fn names(users: &BTreeSet<UserName>) -> Vec<String> {
    users.iter().map(ToString::to_string).collect()
}

/// A task on the wire.
pub(crate) fn task_info(v: &TaskView) -> pb::TaskInfo {
    let t = &v.task;
    pb::TaskInfo {
        task_id: t.id().to_string(),
        creator: t.creator().to_string(),
        function_id: t.function_id().to_string(),
        function_owner: t.function_owner().to_string(),
        arguments: t.arguments().clone().into_iter().collect(),
        inputs: t
            .inputs()
            .iter()
            .map(|(slot, s)| pb::TaskSlot {
                slot: slot.clone(),
                owners: names(&s.owners),
                optional: s.optional,
                file_id: s
                    .file
                    .as_ref()
                    .map(|(f, _)| f.to_string())
                    .unwrap_or_default(),
                ciphertext_digest: s.file.as_ref().map(|(_, d)| d.to_hex()).unwrap_or_default(),
            })
            .collect(),
        outputs: t
            .outputs()
            .iter()
            .map(|(slot, s)| pb::TaskSlot {
                slot: slot.clone(),
                owners: names(&s.owners),
                optional: false,
                file_id: s.file.map(|f| f.to_string()).unwrap_or_default(),
                ciphertext_digest: String::new(),
            })
            .collect(),
        participants: names(t.participants()),
        approved_by: v.approved_by.iter().map(ToString::to_string).collect(),
        status: status(t.status()).into(),
        task_digest: v.digest.map(|d| d.to_hex()).unwrap_or_default(),
        reason: t.reason().unwrap_or_default().to_owned(),
        result: t.result().as_ref().map(|r| pb::TaskResult {
            return_value: r.return_value.clone(),
            log: r.log.clone(),
            outputs: r
                .outputs
                .iter()
                .map(|(slot, d)| pb::OutputDigest {
                    slot: slot.clone(),
                    ciphertext_digest: d.to_hex(),
                })
                .collect(),
            usage: Some(pb::Usage {
                wall_us: r.usage.wall_us,
                input_bytes: r.usage.input_bytes,
                output_bytes: r.usage.output_bytes,
            }),
            receipt: r.receipt.clone(),
        }),
        history: t
            .history()
            .iter()
            .map(|h| pb::StatusChange {
                status: status(h.status).into(),
                at_ms: ms(h.at_ms),
            })
            .collect(),
        attempts: t.attempts(),
        function_payload_digest: v.payload_digest.map(|d| d.to_hex()).unwrap_or_default(),
        function_reuse: v.reuse.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parsing_names_the_field() {
        let bad = pb::FunctionSpec {
            executor: "jvm".into(),
            ..Default::default()
        };
        let e = function_spec(Some(bad)).unwrap_err();
        assert!(e.message().contains("spec.executor"), "{}", e.message());
        assert!(
            function_spec(None)
                .unwrap_err()
                .message()
                .contains("missing")
        );
        let both = pb::FunctionSpec {
            executor: "builtin".into(),
            public: true,
            allowed_users: vec!["bob".into()],
            ..Default::default()
        };
        assert!(function_spec(Some(both)).is_err());
        let bad_user = pb::FunctionSpec {
            executor: "builtin".into(),
            allowed_users: vec!["not a name".into()],
            ..Default::default()
        };
        assert!(
            function_spec(Some(bad_user))
                .unwrap_err()
                .message()
                .contains("allowed_users")
        );
    }

    #[test]
    fn status_numbers_follow_teaclave_order() {
        use TaskStatus::*;
        let order = [
            Created,
            DataAssigned,
            Approved,
            Staged,
            Running,
            Finished,
            Failed,
            Canceled,
        ];
        for (i, s) in order.into_iter().enumerate() {
            assert_eq!(status(s) as usize, i + 1);
        }
    }
}
