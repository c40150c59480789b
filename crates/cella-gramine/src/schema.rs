//! Structural checks of a manifest against Gramine's documented manifest syntax (v1.8+)
//! and Cella's rules on top of it: the types of the keys Gramine reads, the keys Cella
//! requires, and the keys it forbids (`sgx.allowed_files`, every `insecure__` option,
//! environment or argv from the host beyond the launch parameters).
//!
//! [`check`] reads the text back as any consumer would (a TOML parser, no knowledge of
//! how it was written) and returns every problem, not only the first; [`verify_files`]
//! then checks that every trusted file exists with the SHA-256 the manifest states.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::config::Mode;
use crate::config::parse_size;
use crate::manifest::{HostFile, passthrough_env};

/// A trusted file of a checked manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedFile {
    /// The host path (the `file:` URI's path).
    pub path: PathBuf,
    /// The SHA-256 the manifest states.
    pub sha256: String,
}

/// What a manifest that passed [`check`] declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// `libos.entrypoint`.
    pub entrypoint: String,
    /// Every trusted file.
    pub trusted_files: Vec<TrustedFile>,
    /// `fs.mounts` as (type, path).
    pub mounts: Vec<(String, String)>,
}

/// Every key Gramine documents that a Cella manifest may set, with its type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    Int,
    Array,
    Table,
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::String(_) => Kind::Str,
        Value::Boolean(_) => Kind::Bool,
        Value::Integer(_) => Kind::Int,
        Value::Array(_) => Kind::Array,
        _ => Kind::Table,
    }
}

/// The keys (dotted) a Cella manifest may contain, with their types. Anything else is
/// refused: a key Gramine does not know is a typo, and a key Gramine knows but Cella does
/// not set is a decision nobody reviewed.
const KEYS: &[(&str, Kind)] = &[
    ("loader.entrypoint.uri", Kind::Str),
    ("loader.entrypoint.sha256", Kind::Str),
    ("loader.log_level", Kind::Str),
    ("loader.argv", Kind::Array),
    ("loader.env", Kind::Table),
    ("libos.entrypoint", Kind::Str),
    ("sys.enable_sigterm_injection", Kind::Bool),
    ("sys.stack.size", Kind::Str),
    ("fs.root.type", Kind::Str),
    ("fs.root.uri", Kind::Str),
    ("fs.mounts", Kind::Array),
    ("sgx.debug", Kind::Bool),
    ("sgx.edmm_enable", Kind::Bool),
    ("sgx.enclave_size", Kind::Str),
    ("sgx.max_threads", Kind::Int),
    ("sgx.isvprodid", Kind::Int),
    ("sgx.isvsvn", Kind::Int),
    ("sgx.remote_attestation", Kind::Str),
    ("sgx.file_check_policy", Kind::Str),
    ("sgx.trusted_files", Kind::Array),
];

/// Keys that are checked as a whole (their content below).
const LEAF_TABLES: &[&str] = &["loader.env"];

/// Keys that must be present.
const REQUIRED: &[&str] = &[
    "loader.entrypoint.uri",
    "loader.argv",
    "loader.env",
    "libos.entrypoint",
    "sys.enable_sigterm_injection",
    "fs.root.uri",
    "fs.mounts",
    "sgx.debug",
    "sgx.edmm_enable",
    "sgx.enclave_size",
    "sgx.max_threads",
    "sgx.remote_attestation",
    "sgx.trusted_files",
];

fn flatten(prefix: &str, table: &Table, out: &mut BTreeMap<String, Value>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(t) if !LEAF_TABLES.contains(&key.as_str()) => flatten(&key, t, out),
            other => {
                out.insert(key, other.clone());
            }
        }
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn file_path(uri: &str) -> Option<&str> {
    uri.strip_prefix("file:")
}

/// Checks `text` as a Cella Gramine manifest for `mode`. Returns what it declares, or
/// every problem found.
///
/// # Errors
///
/// The list of problems, each a sentence naming the key.
pub fn check(text: &str, mode: Mode) -> Result<Checked, Vec<String>> {
    let passthrough = passthrough_env(mode);
    let table: Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => return Err(vec![format!("not TOML: {e}")]),
    };
    let mut keys = BTreeMap::new();
    flatten("", &table, &mut keys);
    let mut problems = Vec::new();

    for (key, value) in &keys {
        if key.contains("insecure__") {
            problems.push(format!("{key}: insecure options are forbidden"));
            continue;
        }
        if key == "sgx.allowed_files" {
            problems.push(
                "sgx.allowed_files is forbidden: every file is trusted (hashed) or encrypted"
                    .into(),
            );
            continue;
        }
        match KEYS.iter().find(|(k, _)| k == key) {
            None => problems.push(format!("{key}: not a key a Cella manifest sets")),
            Some((_, kind)) if kind_of(value) != *kind => {
                problems.push(format!("{key}: wrong type"));
            }
            Some(_) => {}
        }
    }
    for key in REQUIRED {
        if !keys.contains_key(*key) {
            problems.push(format!("{key} is required"));
        }
    }
    let str_of = |key: &str| keys.get(key).and_then(Value::as_str);
    let bool_of = |key: &str| keys.get(key).and_then(Value::as_bool);

    if bool_of("sys.enable_sigterm_injection") != Some(true) {
        problems.push("sys.enable_sigterm_injection must be true (cancel sends SIGTERM)".into());
    }
    if str_of("sgx.remote_attestation") != Some("dcap") {
        problems.push("sgx.remote_attestation must be \"dcap\"".into());
    }
    if let Some(p) = str_of("sgx.file_check_policy")
        && p != "strict"
    {
        problems.push(format!("sgx.file_check_policy {p:?} must be \"strict\""));
    }
    if let Some(level) = str_of("loader.log_level")
        && level != "error"
        && level != "none"
    {
        problems.push(format!(
            "loader.log_level {level:?}: only \"error\" or \"none\" are safe in production"
        ));
    }
    if let Some(size) = str_of("sgx.enclave_size")
        && !parse_size(size).is_some_and(u64::is_power_of_two)
    {
        problems.push(format!(
            "sgx.enclave_size {size:?} is not a power-of-two size"
        ));
    }
    if let Some(size) = str_of("sys.stack.size")
        && parse_size(size).is_none()
    {
        problems.push(format!("sys.stack.size {size:?} is not a size"));
    }
    if keys
        .get("sgx.max_threads")
        .and_then(Value::as_integer)
        .is_some_and(|n| n < 4)
    {
        problems.push("sgx.max_threads must be at least 4 (Gramine's own threads)".into());
    }
    if let Some(uri) = str_of("loader.entrypoint.uri")
        && file_path(uri).is_none_or(|p| !p.starts_with('/'))
    {
        problems.push("loader.entrypoint.uri must be file:<absolute path>".into());
    }
    if let Some(sha) = str_of("loader.entrypoint.sha256")
        && !is_sha256(sha)
    {
        problems.push("loader.entrypoint.sha256 is not 64 lowercase hex digits".into());
    }

    // argv: fixed, first entry the entrypoint.
    let entrypoint = str_of("libos.entrypoint").unwrap_or_default().to_owned();
    if !entrypoint.starts_with('/') {
        problems.push("libos.entrypoint must be an absolute path".into());
    }
    match keys.get("loader.argv").and_then(Value::as_array) {
        Some(argv) if !argv.is_empty() && argv.iter().all(Value::is_str) => {
            if argv.first().and_then(Value::as_str) != Some(entrypoint.as_str()) {
                problems.push("loader.argv[0] must be libos.entrypoint".into());
            }
        }
        _ => problems.push("loader.argv must be a non-empty array of strings".into()),
    }

    // env: fixed values, or passthrough of the launch parameters only.
    if let Some(env) = keys.get("loader.env").and_then(Value::as_table) {
        for (name, v) in env {
            match v {
                Value::String(_) => {}
                Value::Table(t) if t.len() == 1 && t.get("value").is_some_and(Value::is_str) => {}
                Value::Table(t)
                    if t.len() == 1 && t.get("passthrough") == Some(&Value::Boolean(true)) =>
                {
                    if !passthrough.contains(&name.as_str()) {
                        problems.push(format!(
                            "loader.env.{name}: only {passthrough:?} may come from the host"
                        ));
                    }
                }
                _ => problems.push(format!(
                    "loader.env.{name}: must be a string, {{ value = \"...\" }} or \
                     {{ passthrough = true }}"
                )),
            }
        }
    }

    // Trusted files.
    let mut trusted_files = Vec::new();
    for (i, entry) in keys
        .get("sgx.trusted_files")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let Some(t) = entry.as_table() else {
            problems.push(format!(
                "sgx.trusted_files[{i}]: must be {{ uri, sha256 }} (every file hashed here)"
            ));
            continue;
        };
        let uri = t.get("uri").and_then(Value::as_str);
        let sha = t.get("sha256").and_then(Value::as_str);
        if t.keys().any(|k| k != "uri" && k != "sha256") {
            problems.push(format!("sgx.trusted_files[{i}]: unknown key"));
        }
        match (uri.and_then(file_path), sha) {
            (Some(p), Some(s)) if p.starts_with('/') && is_sha256(s) && !p.ends_with('/') => {
                trusted_files.push(TrustedFile {
                    path: PathBuf::from(p),
                    sha256: s.to_owned(),
                });
            }
            _ => problems.push(format!(
                "sgx.trusted_files[{i}]: needs uri = \"file:<absolute path of a file>\" and \
                 sha256 = \"<64 hex>\""
            )),
        }
    }
    let trusted = |p: &str| trusted_files.iter().any(|t| t.path == Path::new(p));

    // Root and mounts.
    if str_of("fs.root.type").is_some_and(|t| t != "chroot") {
        problems.push("fs.root.type must be chroot".into());
    }
    let root = str_of("fs.root.uri")
        .and_then(file_path)
        .unwrap_or_default();
    if !root.starts_with('/') {
        problems.push("fs.root.uri must be file:<absolute path>".into());
    }
    let mut mounts = Vec::new();
    let mut entry_mounted = false;
    for (i, m) in keys
        .get("fs.mounts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let Some(m) = m.as_table() else {
            problems.push(format!("fs.mounts[{i}]: must be a table"));
            continue;
        };
        let kind = m.get("type").and_then(Value::as_str).unwrap_or("chroot");
        let path = m.get("path").and_then(Value::as_str).unwrap_or_default();
        let uri = m.get("uri").and_then(Value::as_str);
        if !path.starts_with('/') {
            problems.push(format!("fs.mounts[{i}]: path must be absolute"));
        }
        let allowed: &[&str] = match kind {
            "chroot" => &["type", "path", "uri"],
            "tmpfs" => &["type", "path", "uri"],
            "encrypted" => &["type", "path", "uri", "key_name"],
            other => {
                problems.push(format!(
                    "fs.mounts[{i}]: type {other:?} is not chroot, tmpfs or encrypted"
                ));
                &[]
            }
        };
        if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
            problems.push(format!("fs.mounts[{i}]: key {k:?} not allowed for {kind}"));
        }
        match kind {
            "chroot" => match uri.and_then(file_path) {
                // Every chroot mount is of one trusted file: nothing else of the host is
                // reachable.
                Some(p) if trusted(p) => {
                    if path == entrypoint {
                        entry_mounted = true;
                    }
                }
                _ => problems.push(format!(
                    "fs.mounts[{i}] ({path}): a chroot mount must be of one trusted file"
                )),
            },
            "encrypted" => {
                let key = m
                    .get("key_name")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                if key.starts_with('_') {
                    problems.push(format!(
                        "fs.mounts[{i}] ({path}): key {key:?} is shared by every instance of \
                         the enclave; use a key the instance draws itself"
                    ));
                }
                if uri.and_then(file_path).is_none() {
                    problems.push(format!("fs.mounts[{i}] ({path}): needs a file: uri"));
                }
            }
            _ => {}
        }
        mounts.push((kind.to_owned(), path.to_owned()));
    }
    if !entrypoint.is_empty() && !entry_mounted {
        problems.push(format!(
            "libos.entrypoint {entrypoint}: not a chroot mount of a trusted file"
        ));
    }
    if problems.is_empty() {
        Ok(Checked {
            entrypoint,
            trusted_files,
            mounts,
        })
    } else {
        Err(problems)
    }
}

/// Checks that every trusted file of `checked` exists and has the SHA-256 the manifest
/// states.
///
/// # Errors
///
/// The list of files missing or different.
pub fn verify_files(checked: &Checked) -> Result<(), Vec<String>> {
    let problems: Vec<String> = checked
        .trusted_files
        .iter()
        .filter_map(|t| match HostFile::measure(&t.path) {
            Ok(f) if f.sha256 == t.sha256 => None,
            Ok(f) => Some(format!(
                "{}: SHA-256 is {}, the manifest says {}",
                t.path.display(),
                f.sha256,
                t.sha256
            )),
            Err(e) => Some(format!("{}: {e}", t.path.display())),
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
