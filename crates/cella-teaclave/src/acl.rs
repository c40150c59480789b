//! Teaclave's roles on Cella's users, and Teaclave's access-control table for the
//! frontend's methods.
//!
//! Cella has three roles (admin, function_owner, data_owner); Teaclave four. A Teaclave
//! `PlatformAdmin` is registered with all three of Cella's (Teaclave's admin passes every
//! check), `FunctionOwner` as function_owner, `DataOwner` and `DataOwnerManager` as
//! data_owner (Cella has no owner groups: the attribute is not kept, and a manager
//! manages no users). A caller's Teaclave methods are the union of what its Cella roles
//! allow.

use std::collections::BTreeSet;

use cella_types::Role;

/// Cella's roles for a Teaclave role string, or `None` for one Teaclave does not know.
pub(crate) fn roles_of(teaclave_role: &str) -> Option<BTreeSet<Role>> {
    let roles: &[Role] = match teaclave_role {
        "PlatformAdmin" => &Role::ALL,
        "FunctionOwner" => &[Role::FunctionOwner],
        "DataOwner" | "DataOwnerManager" => &[Role::DataOwner],
        _ => return None,
    };
    Some(roles.iter().copied().collect())
}

/// The frontend methods (Teaclave's ACL names) a function owner may call.
const FUNCTION_OWNER: &[&str] = &[
    "register_function",
    "update_function",
    "delete_function",
    "disable_function",
    "get_function",
    "list_functions",
    "get_function_usage_stats",
];

/// The frontend methods a data owner (or data owner manager) may call.
const DATA_OWNER: &[&str] = &[
    "register_input_file",
    "register_output_file",
    "update_input_file",
    "update_output_file",
    "register_fusion_output",
    "register_input_from_output",
    "get_output_file",
    "get_input_file",
    "create_task",
    "get_task",
    "assign_data",
    "approve_task",
    "invoke_task",
    "cancel_task",
    "get_function",
    "list_functions",
    "get_function_usage_stats",
];

/// Whether a caller with `roles` may call the frontend method `api` (an ACL name).
pub(crate) fn allows(roles: &BTreeSet<Role>, api: &str) -> bool {
    roles.contains(&Role::Admin)
        || (roles.contains(&Role::FunctionOwner) && FUNCTION_OWNER.contains(&api))
        || (roles.contains(&Role::DataOwner) && DATA_OWNER.contains(&api))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teaclaves_roles_map_onto_cellas_and_its_acl_holds() {
        let admin = roles_of("PlatformAdmin").unwrap();
        let fo = roles_of("FunctionOwner").unwrap();
        let dom = roles_of("DataOwnerManager").unwrap();
        assert_eq!(roles_of("DataOwner").unwrap(), dom);
        assert_eq!(roles_of(""), None);
        assert_eq!(roles_of("platformadmin"), None);
        assert!(allows(&admin, "query_audit_logs"));
        assert!(!allows(&fo, "query_audit_logs") && !allows(&dom, "query_audit_logs"));
        assert!(allows(&fo, "register_function") && !allows(&fo, "create_task"));
        assert!(allows(&dom, "create_task") && !allows(&dom, "register_function"));
        assert!(allows(&dom, "get_function") && allows(&fo, "get_function"));
        assert!(!allows(&BTreeSet::new(), "get_task"));
    }
}
