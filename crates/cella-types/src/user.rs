//! Users and their roles.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted user name, in bytes: long enough for e-mail-like names, short enough
/// to keep task records and audit lines small.
pub const MAX_USER_NAME_LEN: usize = 64;

/// A validated user name: 1 to 64 characters from `[A-Za-z0-9._@-]`, starting with a
/// letter or digit.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

/// A string that is not a valid user name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid user name {input:?}: use 1 to {MAX_USER_NAME_LEN} characters from A-Z a-z 0-9 . _ @ -, starting with a letter or digit"
)]
pub struct ParseUserNameError {
    /// The rejected input, cut to 80 characters.
    pub input: String,
}

impl UserName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserName {
    type Err = ParseUserNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= MAX_USER_NAME_LEN
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseUserNameError {
                input: s.chars().take(80).collect(),
            })
        }
    }
}

impl TryFrom<String> for UserName {
    type Error = ParseUserNameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<UserName> for String {
    fn from(u: UserName) -> String {
        u.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A named role. A user holds a set of roles; the policy engine decides what each allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages users and policy.
    Admin,
    /// May register functions.
    FunctionOwner,
    /// May register input and output files.
    DataOwner,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 3] = [Role::Admin, Role::FunctionOwner, Role::DataOwner];

    /// The role's name as used on the wire and in the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::FunctionOwner => "function_owner",
            Role::DataOwner => "data_owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, function_owner or data_owner")]
pub struct ParseRoleError(pub String);

impl FromStr for Role {
    type Err = ParseRoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ParseRoleError(s.chars().take(40).collect()))
    }
}

/// A user account. The password hash is an argon2id PHC string; it never leaves the node.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's unique name.
    pub name: UserName,
    /// The roles the user holds.
    pub roles: BTreeSet<Role>,
    /// argon2id hash of the password, in PHC string format.
    pub password_hash: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl User {
    /// Whether the user holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for good in ["alice", "bank-a", "a.b_c@d", "0x"] {
            assert!(good.parse::<UserName>().is_ok(), "{good}");
        }
        for bad in ["", "-lead", "has space", "é", &"x".repeat(65)] {
            assert!(bad.parse::<UserName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_parse_and_debug_hides_hash() {
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
        let u = User {
            name: "alice".parse().unwrap(),
            roles: [Role::Admin].into(),
            password_hash: "$argon2id$secret".into(),
            created_ms: 0,
        };
        assert!(!format!("{u:?}").contains("secret"));
    }
}
