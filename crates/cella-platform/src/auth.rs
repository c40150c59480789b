//! Authentication: users with argon2id password hashes, signed session tokens, sessions
//! that logout or a password change revoke, and the first admin account.
//!
//! A token is `v1.<payload>.<mac>`: `payload` is base64url(session id (16 bytes) ‖
//! expiry in ms (u64 BE)), `mac` is base64url(HMAC-SHA256(token key, payload)). The token
//! key is 32 random bytes kept in the (sealed) metadata store. A valid MAC and expiry are
//! not enough: the session must still exist, so logout revokes at once.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use cella_store::{Record, WriteTx};
use cella_types::{Role, User, UserName};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditAction, Subject, audit};
use crate::error::{Object, Refusal};
use crate::page::{Listed, Page, PageRequest, Position};
use crate::policy::{self, Action};
use crate::{Platform, PlatformError, Result, now_ms};

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest accepted password, in bytes: bounds the hashing work one request can cause.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Length of a session id in bytes: 128 bits, unguessable.
const SESSION_ID_LEN: usize = 16;
/// Name of the first admin account.
pub const FIRST_ADMIN: &str = "admin";

/// An authenticated caller, as established from a valid session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user: UserName,
    /// The user's roles when the call was authenticated.
    pub roles: BTreeSet<Role>,
    session: String,
}

impl Caller {
    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// A caller for tests of the policy module.
    #[cfg(test)]
    pub(crate) fn for_test(user: &str, roles: &[Role]) -> Self {
        Self {
            user: user.parse().expect("test user name"),
            roles: roles.iter().copied().collect(),
            session: String::new(),
        }
    }
}

/// A login session; deleting it revokes its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    id: String,
    user: UserName,
    expires_ms: u64,
}

impl Record for Session {
    const TABLE: &'static str = "sessions";
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// A node-wide secret kept in the sealed store.
#[derive(Serialize, Deserialize)]
pub(crate) struct NodeSecret {
    pub(crate) name: String,
    pub(crate) bytes: Vec<u8>,
}

impl Record for NodeSecret {
    const TABLE: &'static str = "node_secrets";
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// A new session token.
#[derive(Debug, Clone)]
pub struct Login {
    /// The bearer token.
    pub token: String,
    /// When it expires, milliseconds since the Unix epoch.
    pub expires_ms: u64,
    /// The user's roles.
    pub roles: BTreeSet<Role>,
}

/// The token-signing half of authentication.
pub(crate) struct TokenKey(ring::hmac::Key);

impl TokenKey {
    /// Loads the token key from the store, creating it on first start.
    pub(crate) fn load_or_create(store: &cella_store::MetaStore) -> Result<Self> {
        let bytes = store.write(|tx| {
            if let Some(s) = tx.get::<NodeSecret>("token-key")? {
                return Ok::<_, PlatformError>(s.bytes);
            }
            let bytes = random_bytes::<32>()?.to_vec();
            tx.put(&NodeSecret {
                name: "token-key".into(),
                bytes: bytes.clone(),
            })?;
            Ok(bytes)
        })?;
        Ok(Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes)))
    }

    fn sign(&self, session: &[u8; SESSION_ID_LEN], expires_ms: u64) -> String {
        let mut payload = Vec::with_capacity(SESSION_ID_LEN + 8);
        payload.extend_from_slice(session);
        payload.extend_from_slice(&expires_ms.to_be_bytes());
        let payload = B64.encode(payload);
        let mac = ring::hmac::sign(&self.0, payload.as_bytes());
        format!("v1.{payload}.{}", B64.encode(mac.as_ref()))
    }

    /// The session id and expiry of a token with a valid MAC.
    fn open(&self, token: &str) -> Result<(String, u64)> {
        let bad = || PlatformError::NoSession("malformed or forged session token".into());
        let rest = token.strip_prefix("v1.").ok_or_else(bad)?;
        let (payload, mac) = rest.split_once('.').ok_or_else(bad)?;
        let mac = B64.decode(mac).map_err(|_| bad())?;
        ring::hmac::verify(&self.0, payload.as_bytes(), &mac).map_err(|_| bad())?;
        let raw = B64.decode(payload).map_err(|_| bad())?;
        if raw.len() != SESSION_ID_LEN + 8 {
            return Err(bad());
        }
        let (sid, exp) = raw.split_at(SESSION_ID_LEN);
        let exp = u64::from_be_bytes(exp.try_into().map_err(|_| bad())?);
        Ok((hex::encode(sid), exp))
    }
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| PlatformError::node("the system random source failed"))?;
    Ok(out)
}

fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| PlatformError::node(format!("password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PlatformError::node(format!("password hashing: {e}")))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash of a password nobody has, so that a login for an unknown user costs the same
/// time as one for a known user and does not reveal which names exist.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password never used").unwrap_or_default())
}

fn check_password_rules(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PlatformError::BadValue(format!(
            "password is too short: use at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PlatformError::BadValue(format!(
            "password is too long: at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

/// A random password of 24 characters from an unambiguous alphabet (about 130 bits).
///
/// # Errors
///
/// [`PlatformError::Internal`] when the system random source fails.
pub fn random_password() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes = random_bytes::<24>()?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

fn revoke_sessions(tx: &mut WriteTx<'_>, user: &UserName) -> Result<()> {
    for s in tx.list::<Session>()? {
        if &s.user == user {
            tx.delete::<Session>(&s.id)?;
        }
    }
    Ok(())
}

impl Platform {
    /// Creates the first admin account when the node has no users, writing its random
    /// password once to a 0600 file in the data directory. There is no default password.
    pub(crate) fn bootstrap_admin(&self) -> Result<()> {
        if self.store.read(|tx| tx.count::<User>())? > 0 {
            return Ok(());
        }
        let password = random_password()?;
        let path = self.config.admin_password_path();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                PlatformError::node_because(
                    format!(
                        "cannot create the admin password file {} (remove a stale one from an earlier data dir)",
                        path.display()
                    ),
                    e,
                )
            })?;
        file.write_all(format!("{password}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| PlatformError::node_because(format!("writing {}", path.display()), e))?;
        let user = User {
            name: FIRST_ADMIN
                .parse()
                .map_err(|e| PlatformError::node_because("the first admin's name", e))?,
            roles: Role::ALL.into_iter().collect(),
            password_hash: hash_password(&password)?,
            created_ms: now_ms(),
        };
        self.store.write(|tx| {
            tx.put(&user)?;
            audit(
                tx,
                &user.name,
                AuditAction::BootstrapAdmin,
                Subject::user(&user.name),
            )
        })?;
        tracing::info!(path = %path.display(), "created the first admin; its password is in this file");
        Ok(())
    }

    /// Checks a password and opens a session. `user` is `None` when the name given is not
    /// a valid user name: it is refused like an unknown one, after the same wait and hash,
    /// so a refusal never says whether the name exists.
    ///
    /// # Errors
    ///
    /// [`PlatformError::NoSession`] for an unknown user or wrong password (the
    /// same message for both); [`PlatformError::Busy`] when too many passwords
    /// are being checked at once (see `hashing`).
    pub fn login(&self, user: Option<&UserName>, password: &str) -> Result<Login> {
        let denied = || PlatformError::NoSession("wrong user name or password".into());
        // Refused before any look-up or hash, the same for every name: no stored password
        // is this long, and its hash would be the costliest.
        if password.len() > MAX_PASSWORD_LEN {
            return Err(denied());
        }
        // The slot is taken before the look-up, so that known and unknown names wait,
        // hash and are refused under load alike.
        let slot = self.hashing.acquire()?;
        let found = match user {
            Some(n) => self.store.read(|tx| tx.get::<User>(n.as_str()))?,
            None => None,
        };
        let Some(found) = found else {
            verify_password(password, decoy_hash());
            return Err(denied());
        };
        if !verify_password(password, &found.password_hash) {
            return Err(denied());
        }
        drop(slot);
        let sid = random_bytes::<SESSION_ID_LEN>()?;
        let ttl = u64::try_from(self.config.token_ttl.as_millis()).unwrap_or(u64::MAX);
        let expires_ms = now_ms().saturating_add(ttl);
        self.store.write(|tx| {
            tx.put(&Session {
                id: hex::encode(sid),
                user: found.name.clone(),
                expires_ms,
            })?;
            audit(
                tx,
                &found.name,
                AuditAction::Login,
                Subject::user(&found.name),
            )
        })?;
        Ok(Login {
            token: self.token_key.sign(&sid, expires_ms),
            expires_ms,
            roles: found.roles,
        })
    }

    /// The caller behind a bearer token.
    ///
    /// # Errors
    ///
    /// [`PlatformError::NoSession`] for a malformed, forged, expired or revoked
    /// token, naming which.
    pub fn authenticate(&self, token: &str) -> Result<Caller> {
        let (sid, expires_ms) = self.token_key.open(token)?;
        if expires_ms <= now_ms() {
            return Err(PlatformError::NoSession(
                "session token expired: log in again".into(),
            ));
        }
        self.store.read(|tx| {
            let session = tx.get::<Session>(&sid)?.ok_or_else(|| {
                PlatformError::NoSession("session was revoked: log in again".into())
            })?;
            let user = tx.get::<User>(session.user.as_str())?.ok_or_else(|| {
                PlatformError::NoSession("the session's user no longer exists".into())
            })?;
            Ok(Caller {
                user: user.name,
                roles: user.roles,
                session: sid.clone(),
            })
        })
    }

    /// Revokes the caller's session.
    ///
    /// # Errors
    ///
    /// Store failures only.
    pub fn logout(&self, caller: &Caller) -> Result<()> {
        self.store.write(|tx| {
            tx.delete::<Session>(&caller.session)?;
            audit(
                tx,
                &caller.user,
                AuditAction::Logout,
                Subject::user(&caller.user),
            )
        })
    }

    /// Creates a user (admin only).
    ///
    /// # Errors
    ///
    /// Permission, invalid name or password, or [`PlatformError::Taken`].
    pub fn register_user(
        &self,
        caller: &Caller,
        name: UserName,
        password: &str,
        roles: BTreeSet<Role>,
    ) -> Result<User> {
        policy::check(caller, &Action::ManageUsers)?;
        check_password_rules(password)?;
        if roles.is_empty() {
            return Err(PlatformError::BadValue(
                "a user needs at least one role".into(),
            ));
        }
        let password_hash = {
            let _slot = self.hashing.acquire()?;
            hash_password(password)?
        };
        let user = User {
            name,
            roles,
            password_hash,
            created_ms: now_ms(),
        };
        self.store.write(|tx| {
            if tx.get::<User>(user.name.as_str())?.is_some() {
                return Err(PlatformError::Taken(format!("user {}", user.name)));
            }
            tx.put(&user)?;
            audit(
                tx,
                &caller.user,
                AuditAction::RegisterUser,
                Subject::user(&user.name),
            )
        })?;
        Ok(user)
    }

    /// Changes a password: the caller's own (old password required; `target` `None` or
    /// the caller), or any user's for an admin. Revokes every session of that user.
    ///
    /// # Errors
    ///
    /// Permission, wrong old password, password rules, unknown user.
    pub fn change_password(
        &self,
        caller: &Caller,
        target: Option<UserName>,
        old_password: &str,
        new_password: &str,
    ) -> Result<()> {
        let target = target.unwrap_or_else(|| caller.user.clone());
        let own = target == caller.user;
        if !own {
            policy::check(caller, &Action::ManageUsers)?;
        }
        check_password_rules(new_password)?;
        let mut user = self
            .store
            .read(|tx| tx.get::<User>(target.as_str()))?
            .ok_or_else(|| PlatformError::Missing(Object::User(target.clone())))?;
        let slot = self.hashing.acquire()?;
        if own && !verify_password(old_password, &user.password_hash) {
            return Err(Refusal::WrongOldPassword.into());
        }
        let new_hash = hash_password(new_password)?;
        drop(slot);
        self.store.write(|tx| {
            // Re-read inside the transaction so a concurrent change is not lost.
            let current = tx.get::<User>(target.as_str())?;
            if current.as_ref().map(|u| &u.password_hash) != Some(&user.password_hash) {
                return Err(PlatformError::WrongState(
                    "the password changed meanwhile; try again".into(),
                ));
            }
            user.password_hash = new_hash;
            tx.put(&user)?;
            revoke_sessions(tx, &target)?;
            audit(
                tx,
                &caller.user,
                AuditAction::ChangePassword,
                Subject::user(&target),
            )
        })
    }

    /// One page of the users, in creation order (admin only).
    ///
    /// # Errors
    ///
    /// Permission.
    pub fn list_users(&self, caller: &Caller, page: &PageRequest) -> Result<Page<User>> {
        policy::check(caller, &Action::ManageUsers)?;
        Ok(page.select(self.store.read(|tx| tx.list::<User>())?))
    }
}

impl Listed for User {
    fn position(&self) -> Position {
        Position {
            created_ms: self.created_ms,
            id: self.name.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    /// A node with one password-hashing slot and no executors.
    fn one_slot_platform(dir: &std::path::Path) -> std::sync::Arc<Platform> {
        let mut config = crate::NodeConfig::new(dir.join("data"));
        config.password_hash_memory = crate::hashing::ARGON2_MEMORY_BYTES;
        Platform::open(config, cella_executor::Executors::new()).unwrap()
    }

    #[test]
    fn logins_wait_for_a_hashing_slot_whether_or_not_the_user_exists() {
        let dir = tempfile::tempdir().unwrap();
        let p = one_slot_platform(dir.path());
        let pw = std::fs::read_to_string(p.config.admin_password_path()).unwrap();
        let admin: UserName = FIRST_ADMIN.parse().unwrap();
        let nobody: UserName = "nobody-here".parse().unwrap();
        let held = p.hashing.acquire().unwrap();
        std::thread::scope(|s| {
            let known = s.spawn(|| p.login(Some(&admin), pw.trim()).map(|l| l.roles));
            let unknown = s.spawn(|| p.login(Some(&nobody), "some password"));
            // A name that is no user name at all waits, hashes and is refused alike.
            let invalid = s.spawn(|| p.login(None, "some password"));
            // Both queue for the slot before looking the name up or hashing anything.
            while p.hashing.waiting() < 3 {
                std::thread::yield_now();
            }
            assert!(!known.is_finished() && !unknown.is_finished() && !invalid.is_finished());
            drop(held);
            assert!(known.join().unwrap().unwrap().contains(&Role::Admin));
            for refused in [unknown, invalid] {
                let e = refused.join().unwrap().unwrap_err();
                assert!(matches!(e, PlatformError::NoSession(_)), "{e}");
                assert_eq!(e.to_string(), "wrong user name or password");
            }
        });
        assert_eq!(p.hashing.in_use(), 0);
        // An over-long password is refused before any slot or look-up, for any name.
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        let _held = p.hashing.acquire().unwrap();
        for user in [Some(&admin), Some(&nobody), None] {
            let e = p.login(user, &long).unwrap_err();
            assert!(matches!(e, PlatformError::NoSession(_)), "{e}");
            assert_eq!(e.to_string(), "wrong user name or password");
        }
    }

    #[test]
    fn tokens_are_bound_to_key_and_payload() {
        let k1 = TokenKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[1; 32]));
        let k2 = TokenKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[2; 32]));
        let t = k1.sign(&[7; SESSION_ID_LEN], 99);
        assert_eq!(k1.open(&t).unwrap(), (hex::encode([7; SESSION_ID_LEN]), 99));
        assert!(k2.open(&t).is_err());
        // Changing the expiry invalidates the MAC.
        let forged = k1.sign(&[7; SESSION_ID_LEN], 100);
        let (_, mac) = forged.rsplit_once('.').unwrap();
        let (head, _) = t.rsplit_once('.').unwrap();
        assert!(k1.open(&format!("{}.{mac}", head)).is_err());
        for junk in ["", "v1.", "v1.a.b", "v2.xx.yy", "garbage"] {
            assert!(k1.open(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn password_rules_and_random_passwords() {
        assert!(check_password_rules("short").is_err());
        assert!(check_password_rules(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
        let p = random_password().unwrap();
        assert_eq!(p.len(), 24);
        assert_ne!(p, random_password().unwrap());
        assert!(check_password_rules(&p).is_ok());
    }
}
