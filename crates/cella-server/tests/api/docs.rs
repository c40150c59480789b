//! Every `docs/…` path named in the code, the protos, the examples and the docs exists,
//! so a reader sent to one finds it (auth.proto once pointed to a docs/api.md that did
//! not exist).

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !["target", ".git", "testdata"].contains(&name) {
                files(&path, out);
            }
        } else if [".rs", ".proto", ".md", ".py", ".toml", ".wat", ".c"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            out.push(path);
        }
    }
}

/// The `docs/…` paths in `text`: from `docs/` to the end of a file name with an
/// extension, trailing punctuation dropped.
fn named_docs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("docs/") {
        let start_ok = at == 0 || {
            let before = rest.as_bytes()[at - 1];
            !before.is_ascii_alphanumeric() && before != b'_' && before != b'-'
        };
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c)))
            .unwrap_or(tail.len());
        let path = tail[..len].trim_end_matches(['.', '/']);
        if start_ok && path.rsplit('/').next().is_some_and(|f| f.contains('.')) {
            out.push(path.to_owned());
        }
        rest = &tail[len.max(5)..];
    }
    out
}

#[test]
fn every_docs_path_named_anywhere_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut all = Vec::new();
    for dir in ["crates", "proto", "docs", "examples", "deploy", "scripts"] {
        files(&root.join(dir), &mut all);
    }
    all.push(root.join("README.md"));
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in &all {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for path in named_docs(&text) {
            checked += 1;
            if !root.join(&path).exists() {
                missing.push(format!("{} names {path}", file.display()));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} docs paths found: the scan is broken"
    );
    assert!(missing.is_empty(), "missing docs:\n{}", missing.join("\n"));
}

#[test]
fn the_scan_finds_paths_and_only_paths() {
    assert_eq!(
        named_docs("see docs/api.md, and `docs/formats/sealed-file.md`. Not mydocs/x.md"),
        ["docs/api.md", "docs/formats/sealed-file.md"]
    );
    assert!(named_docs("the docs/ directory").is_empty());
}
