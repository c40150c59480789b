//! Passwords and key files: where they are read from, how new ones are made, and how
//! they are written (mode 0600, never over an existing file).

use std::fs;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use cella_crypto::FileKey;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Random bytes in a generated password: 144 bits, 24 base64url characters.
const GENERATED_PASSWORD_BYTES: usize = 18;
/// Mode of every key file written: owner read/write only.
const KEY_FILE_MODE: u32 = 0o600;

/// Where a password comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PasswordSource<'a> {
    /// The first line of a file.
    File(&'a Path),
    /// The first line of standard input.
    Stdin,
    /// A prompt on the terminal (no echo).
    Prompt(&'a str),
}

/// Strips one trailing `\n` or `\r\n`.
fn chomp(mut s: String) -> Zeroizing<String> {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Zeroizing::new(s)
}

/// Reads a password; it must not be empty.
pub(crate) fn read_password(source: PasswordSource<'_>) -> anyhow::Result<Zeroizing<String>> {
    let password = match source {
        PasswordSource::File(path) => {
            let text = Zeroizing::new(
                fs::read_to_string(path)
                    .with_context(|| format!("cannot read password file {}", path.display()))?,
            );
            let first = text.lines().next().unwrap_or_default().to_owned();
            Zeroizing::new(first)
        }
        PasswordSource::Stdin => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            chomp(line)
        }
        PasswordSource::Prompt(prompt) => {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "no password given: use --password-file or --password-stdin when not on a terminal"
                );
            }
            chomp(rpassword::prompt_password(prompt).context("cannot read the password")?)
        }
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

/// Prompts twice for a new password on the terminal and checks the two match.
pub(crate) fn prompt_new_password(what: &str) -> anyhow::Result<Zeroizing<String>> {
    let first = read_password(PasswordSource::Prompt(&format!(
        "New password for {what}: "
    )))?;
    let again = read_password(PasswordSource::Prompt("Repeat it: "))?;
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(first)
}

/// A fresh random password from the OS random source.
pub(crate) fn generate_password() -> anyhow::Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; GENERATED_PASSWORD_BYTES]);
    SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| anyhow::anyhow!("the OS random source failed"))?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
    ))
}

/// Reads a hex key file.
pub(crate) fn read_key_file(path: &Path) -> anyhow::Result<FileKey> {
    let text = Zeroizing::new(
        fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?,
    );
    text.parse()
        .with_context(|| format!("key file {} does not hold a file key", path.display()))
}

/// Writes `key` as hex to a new file `path` with mode 0600; refuses to replace a file.
pub(crate) fn write_key_file(path: &Path, key: &FileKey) -> anyhow::Result<()> {
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(KEY_FILE_MODE)
            .open(path)?;
        file.write_all(key.to_hex().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    };
    write().with_context(|| format!("cannot write key file {}", path.display()))
}

/// The key in `path` if the file exists, else a new key written there. Returns the key
/// and whether it is new.
pub(crate) fn key_file_or_new(path: &Path) -> anyhow::Result<(FileKey, bool)> {
    if path.exists() {
        Ok((read_key_file(path)?, false))
    } else {
        let key = FileKey::generate();
        write_key_file(path, &key)?;
        Ok((key, true))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn key_files_are_private_hex_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let (key, new) = key_file_or_new(&path).unwrap();
        assert!(new);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        let (again, new) = key_file_or_new(&path).unwrap();
        assert!(!new);
        assert_eq!(again.as_bytes(), key.as_bytes());
        assert!(write_key_file(&path, &key).is_err());

        fs::write(dir.path().join("bad.key"), "nothex").unwrap();
        let err = read_key_file(&dir.path().join("bad.key")).unwrap_err();
        assert!(
            format!("{err:#}").contains("does not hold a file key"),
            "{err:#}"
        );
    }

    #[test]
    fn passwords_from_files_and_generated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        fs::write(&path, "s3cret\r\nignored\n").unwrap();
        assert_eq!(
            read_password(PasswordSource::File(&path)).unwrap().as_str(),
            "s3cret"
        );
        fs::write(&path, "\n").unwrap();
        assert!(read_password(PasswordSource::File(&path)).is_err());
        let a = generate_password().unwrap();
        assert_eq!(a.len(), 24);
        assert_ne!(a, generate_password().unwrap());
    }
}
