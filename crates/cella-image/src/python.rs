//! What a `python3` image holds, asked of the interpreter itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ImageError;
use crate::elf::{self, SearchPath};
use crate::store::Plan;

/// Top-level directories of the standard library left out of images: tests, IDLE, Tk,
/// demos, `ensurepip`'s bundled wheels, installed packages, and the build configuration
/// (`config-3.X-*`, which holds the static `libpython`).
const EXCLUDED_TOP: &[&str] = &[
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "site-packages",
    "dist-packages",
    "lib-dynload",
];
/// Directories left out at any depth: packages' own test suites.
const EXCLUDED_ANYWHERE: &[&str] = &["test", "tests", "idle_test"];

/// Printed by the interpreter, as JSON: where its files are.
const QUERY: &str = r#"import json, sys, sysconfig
p = sysconfig.get_paths()
print(json.dumps({
    "executable": sys.executable,
    "stdlib": p["stdlib"],
    "platstdlib": p["platstdlib"],
    "dynload": [d for d in sys.path if d.rstrip("/").endswith("lib-dynload")],
    "cache_tag": sys.implementation.cache_tag,
}))
"#;

#[derive(Debug, serde::Deserialize)]
struct Answer {
    executable: String,
    stdlib: String,
    platstdlib: String,
    dynload: Vec<String>,
    cache_tag: Option<String>,
}

/// The interpreter a `python3` image is built from when none is named: `/usr/bin/python3`
/// if it exists, else the first `python3` on `PATH`, resolved to the real file.
///
/// # Errors
///
/// [`ImageError::Python`] if there is none, [`ImageError::NotElf`] if the one found is a
/// script (such as a pyenv shim).
pub fn default_python() -> Result<PathBuf, ImageError> {
    find_python(
        Path::new("/usr/bin/python3"),
        &std::env::var_os("PATH").unwrap_or_default(),
    )
}

/// [`default_python`] with the preferred path and `PATH` given.
fn find_python(preferred: &Path, path_var: &std::ffi::OsStr) -> Result<PathBuf, ImageError> {
    if preferred.exists() {
        return Ok(preferred.to_path_buf());
    }
    for dir in std::env::split_paths(path_var) {
        let candidate = dir.join("python3");
        if candidate.is_file() {
            let real = std::fs::canonicalize(&candidate)
                .map_err(|e| ImageError::io("resolving", &candidate, e))?;
            if !elf::is_elf(&real)? {
                return Err(ImageError::NotElf { path: real });
            }
            return Ok(real);
        }
    }
    Err(ImageError::Python {
        python: "python3".into(),
        message: format!(
            "neither {} nor a python3 on PATH; name one with --python",
            preferred.display()
        ),
    })
}

/// Asks the interpreter at `real` where its files are.
fn query(real: &Path) -> Result<Answer, ImageError> {
    let out = Command::new(real)
        .args(["-I", "-S", "-B", "-c", QUERY])
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| ImageError::Python {
            python: real.to_path_buf(),
            message: format!("cannot run it: {e}"),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("");
        return Err(ImageError::Python {
            python: real.to_path_buf(),
            message: format!("asking it for its paths failed ({}): {last}", out.status),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| ImageError::Python {
        python: real.to_path_buf(),
        message: format!("unexpected answer to the path query: {e}"),
    })
}

/// Adds every file under `dir` (at the same path inside), skipping excluded directories
/// and `.pyc` files of other interpreters or optimisation levels. Links are followed
/// (the file appears at the link's path); a directory reached twice is walked once.
fn add_tree(
    plan: &mut Plan,
    name: &str,
    dir: &Path,
    top: bool,
    pyc_suffix: Option<&str>,
    seen: &mut Vec<PathBuf>,
) -> Result<(), ImageError> {
    let real = std::fs::canonicalize(dir).map_err(|e| ImageError::io("resolving", dir, e))?;
    if seen.contains(&real) {
        return Ok(());
    }
    seen.push(real);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ImageError::io("reading", dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| ImageError::io("reading", dir, e))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        // Follows links: a dangling one is skipped, as Python would not find it either.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let excluded = EXCLUDED_ANYWHERE.contains(&&*file_name)
                || (top
                    && (EXCLUDED_TOP.contains(&&*file_name) || file_name.starts_with("config-")));
            if !excluded {
                add_tree(plan, name, &path, false, pyc_suffix, seen)?;
            }
        } else if meta.is_file() {
            let in_cache = dir.file_name().is_some_and(|d| d == "__pycache__");
            if in_cache
                && file_name.ends_with(".pyc")
                && pyc_suffix.is_some_and(|s| !file_name.ends_with(s))
            {
                continue;
            }
            plan.add(name, &path, &path)?;
        }
    }
    Ok(())
}

/// The command line and the files of a `python3` image built from `python`.
pub(crate) fn plan(python: &Path, name: &str) -> Result<(Vec<String>, Plan), ImageError> {
    let python = if python.is_absolute() {
        python.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| ImageError::io("reading the current directory", Path::new("."), e))?
            .join(python)
    };
    let real = std::fs::canonicalize(&python).map_err(|e| ImageError::Python {
        python: python.clone(),
        message: format!("cannot resolve it: {e}"),
    })?;
    let info = elf::read_elf(&real)?;
    let answer = query(&real)?;
    let Some(python_str) = python.to_str() else {
        return Err(ImageError::Python {
            python,
            message: "its path is not UTF-8".into(),
        });
    };
    let argv = vec![
        python_str.to_owned(),
        "-I".into(),
        "-B".into(),
        cella_libos::image::PROGRAM_FILE.into(),
    ];
    let mut plan = Plan::default();
    plan.add(name, &real, &real)?;
    plan.add(name, &python, &real)?;
    let exe = PathBuf::from(&answer.executable);
    if exe.is_absolute() && exe.exists() {
        plan.add(name, &exe, &real)?;
    }

    // The interpreter's libraries: all of them are required.
    let search = SearchPath::host(&info);
    let root = (real.clone(), info);
    for lib in elf::resolve_closure(std::slice::from_ref(&root), &search)? {
        for inside in &lib.inside {
            plan.add(name, inside, &lib.host)?;
        }
    }

    // The standard library.
    let pyc_suffix = answer.cache_tag.as_ref().map(|t| format!(".{t}.pyc"));
    let mut seen = Vec::new();
    let mut stdlib_dirs = vec![PathBuf::from(&answer.stdlib)];
    if answer.platstdlib != answer.stdlib {
        stdlib_dirs.push(PathBuf::from(&answer.platstdlib));
    }
    for dir in &stdlib_dirs {
        if !dir.join("os.py").exists() {
            return Err(ImageError::Python {
                python: real,
                message: format!("its standard library {} has no os.py", dir.display()),
            });
        }
        add_tree(&mut plan, name, dir, true, pyc_suffix.as_deref(), &mut seen)?;
    }

    // Extension modules, and the libraries they load. A module whose libraries are not
    // installed cannot be imported on the host either: it is left out, with a warning.
    for dir in answer.dynload.iter().map(PathBuf::from) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut modules: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        modules.sort();
        for module in modules {
            if !std::fs::metadata(&module).is_ok_and(|m| m.is_file()) {
                continue;
            }
            if !elf::is_elf(&module)? {
                plan.add(name, &module, &module)?;
                continue;
            }
            let minfo = elf::read_elf(&module)?;
            match elf::resolve_closure(&[root.clone(), (module.clone(), minfo)], &search) {
                Ok(libs) => {
                    plan.add(name, &module, &module)?;
                    for lib in libs {
                        for inside in &lib.inside {
                            if !plan.contains(inside) {
                                plan.add(name, inside, &lib.host)?;
                            }
                        }
                    }
                }
                Err(e @ ImageError::LibraryNotFound { .. }) => {
                    tracing::warn!(module = %module.display(), "extension module left out: {e}");
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok((argv, plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_interpreter_is_found_and_shims_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shims = dir.path().join("shims");
        let real = dir.path().join("real");
        std::fs::create_dir_all(&shims).unwrap();
        std::fs::create_dir_all(&real).unwrap();
        let absent = dir.path().join("absent/python3");
        // A pyenv-style shim first on PATH: refused, naming it.
        std::fs::write(
            shims.join("python3"),
            "#!/usr/bin/env bash\nexec pyenv exec \"$@\"\n",
        )
        .unwrap();
        let path = std::env::join_paths([&shims, &real]).unwrap();
        let err = find_python(&absent, &path).unwrap_err();
        assert!(matches!(err, ImageError::NotElf { .. }), "{err}");
        assert!(err.to_string().contains("shims/python3"), "{err}");
        // A link to an ELF file on PATH: resolved to the real file.
        std::os::unix::fs::symlink("/bin/true", real.join("python3")).unwrap();
        let path = std::env::join_paths([&real]).unwrap();
        assert_eq!(
            find_python(&absent, &path).unwrap(),
            std::fs::canonicalize("/bin/true").unwrap()
        );
        // The preferred path wins, as given.
        assert_eq!(
            find_python(Path::new("/bin/true"), &path).unwrap(),
            Path::new("/bin/true")
        );
        let err = find_python(&absent, std::ffi::OsStr::new("")).unwrap_err();
        assert!(err.to_string().contains("--python"), "{err}");
    }
}
