use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::*;

/// One python3 image, built once for every test that reads it.
fn python_image() -> &'static (tempfile::TempDir, ImageSummary, PathBuf) {
    static IMAGE: OnceLock<(tempfile::TempDir, ImageSummary, PathBuf)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let python = crate::default_python().unwrap();
        let summary = ImageStore::new(dir.path())
            .build_python3(&python, "python3")
            .unwrap();
        (dir, summary, python)
    })
}

fn host_python_paths(python: &Path) -> (String, PathBuf) {
    let out = Command::new(python)
        .args([
            "-I",
            "-S",
            "-c",
            "import os, sys; print(os.__file__); print(sys.executable)",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let os_py = lines.next().unwrap().to_owned();
    let exe = fs::canonicalize(lines.next().unwrap()).unwrap();
    (os_py, exe)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Makes `path` and its parent directory writable again, to tamper with it.
fn unlock(path: &Path) {
    let parent = path.parent().unwrap();
    fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

#[test]
fn python3_image_holds_the_interpreter_its_libraries_and_the_standard_library() {
    let (dir, summary, python) = python_image();
    let store = ImageStore::new(dir.path());
    let loaded = store.load("python3").unwrap();
    eprintln!("{summary:?}");
    assert_eq!(
        summary.measurement,
        hex::encode(loaded.image.manifest_digest())
    );
    assert_eq!(summary.files, loaded.image.files.len());
    assert_eq!(summary.size_bytes, loaded.size_bytes);
    let paths: Vec<&str> = loaded.image.files.iter().map(|f| f.path.as_str()).collect();
    let (os_py, real) = host_python_paths(python);
    assert!(paths.contains(&os_py.as_str()), "no {os_py}");
    assert!(
        paths.contains(&real.to_str().unwrap()),
        "no {}",
        real.display()
    );
    assert!(paths.contains(&python.to_str().unwrap()));
    assert_eq!(
        loaded.image.argv,
        [python.to_str().unwrap(), "-I", "-B", "program"]
    );
    assert!(
        paths
            .iter()
            .any(|p| p.rsplit('/').next().unwrap().starts_with("libc.so")),
        "no libc"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.contains("ld-linux") || p.contains("/ld-"))
    );
    assert!(
        paths.iter().any(|p| p.contains("lib-dynload/")),
        "no extension module"
    );
    assert!(paths.iter().any(|p| p.contains("__pycache__/")), "no .pyc");
    for excluded in [
        "/test/",
        "/idlelib/",
        "/tkinter/",
        "/ensurepip/",
        "site-packages/",
    ] {
        assert!(
            !paths.iter().any(|p| p.contains(excluded)),
            "{excluded} is in"
        );
    }
    assert!(!paths.iter().any(|p| p.ends_with(".opt-1.pyc")));
    // Files are read-only, programs executable, directories 0555.
    let interp = loaded.rootfs.join(real.strip_prefix("/").unwrap());
    assert_eq!(
        fs::metadata(&interp).unwrap().permissions().mode() & 0o777,
        0o555
    );
    let os_file = loaded.rootfs.join(os_py.trim_start_matches('/'));
    assert_eq!(
        fs::metadata(&os_file).unwrap().permissions().mode() & 0o777,
        0o444
    );
    let parent = os_file.parent().unwrap();
    assert_eq!(
        fs::metadata(parent).unwrap().permissions().mode() & 0o777,
        0o555
    );
    // Listed as it was built.
    assert_eq!(store.list().unwrap(), vec![summary.clone()]);
}

/// The image's interpreter runs on the image's own files: its loader, its libraries
/// only (no cache, no host directories), its standard library, its extension modules.
#[test]
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn python3_image_runs_on_its_own_files() {
    let (dir, _summary, python) = python_image();
    let loaded = ImageStore::new(dir.path()).load("python3").unwrap();
    let info = crate::elf::read_elf(python).unwrap();
    let rootfs = &loaded.rootfs;
    let inside = |p: &str| rootfs.join(p.trim_start_matches('/'));
    let lib_dirs: Vec<String> = [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ]
    .iter()
    .map(|d| inside(d).to_string_lossy().into_owned())
    .collect();
    let out = Command::new(inside(info.interpreter.as_deref().unwrap()))
        .arg("--inhibit-cache")
        .arg("--library-path")
        .arg(lib_dirs.join(":"))
        .arg(inside(python.to_str().unwrap()))
        .args(["-I", "-B", "-c"])
        .arg(
            "import sys, os, json, hashlib, decimal, csv, math, statistics, ctypes, zlib; \
             print(os.__file__); print(sys.prefix)",
        )
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let os_file = stdout.lines().next().unwrap();
    assert!(
        Path::new(os_file).starts_with(rootfs),
        "os.py came from {os_file}, not from the image"
    );
}

#[test]
fn native_image_of_true_holds_its_loader_and_libc() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::new(dir.path());
    let summary = store
        .build_native(Path::new("/bin/true"), "true-libs")
        .unwrap();
    let loaded = store.load("true-libs").unwrap();
    assert_eq!(loaded.image.argv, ["./program"]);
    assert_eq!(summary.files, loaded.image.files.len());
    let libs = crate::shared_libraries(Path::new("/bin/true")).unwrap();
    let paths: Vec<&str> = loaded.image.files.iter().map(|f| f.path.as_str()).collect();
    for lib in &libs {
        assert!(
            paths.contains(&lib.to_str().unwrap()),
            "{lib:?} not in {paths:?}"
        );
    }
    assert!(
        !paths.contains(&"/bin/true"),
        "the program is a payload, not the image"
    );
    // The digests are those of the host's files.
    for f in &loaded.image.files {
        let mut file = File::open(&f.path).unwrap();
        let (digest, _) = hash_file(&mut file, Path::new(&f.path)).unwrap();
        assert_eq!(hex::encode(digest), f.sha256, "{}", f.path);
    }
    // Nothing left beside the image.
    assert_eq!(entries(store.root()), ["true-libs"]);
}

#[test]
fn a_static_program_gives_the_native_image() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s.c");
    fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let bin = dir.path().join("s");
    let Ok(status) = Command::new("gcc")
        .args(["-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
    else {
        eprintln!("gcc not found: skipped");
        return;
    };
    if !status.success() {
        eprintln!("gcc -static failed (no static libc?): skipped");
        return;
    }
    assert!(crate::shared_libraries(&bin).unwrap().is_empty());
    let store = ImageStore::new(&dir.path().join("data"));
    let summary = store.build_native(&bin, "native").unwrap();
    let native = RuntimeImage::native();
    assert_eq!(summary.files, 0);
    assert_eq!(summary.measurement, hex::encode(native.manifest_digest()));
    assert_eq!(store.load("native").unwrap().image, native);
}

#[test]
fn rebuilds_have_the_same_measurement_and_replace_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::new(dir.path());
    let a = store.build_native(Path::new("/bin/true"), "t").unwrap();
    let toml_a = fs::read(store.root().join("t").join(IMAGE_TOML)).unwrap();
    let b = store.build_native(Path::new("/bin/true"), "t").unwrap();
    let toml_b = fs::read(store.root().join("t").join(IMAGE_TOML)).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        toml_a, toml_b,
        "image.toml is byte-identical across rebuilds"
    );
    assert_eq!(entries(store.root()), ["t"], "no staging or old image left");
    store.load("t").unwrap();
    // Another name, same files: another measurement (the name is measured).
    let c = store.build_native(Path::new("/bin/true"), "u").unwrap();
    assert_ne!(a.measurement, c.measurement);
    let names: Vec<String> = store.list().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["t", "u"]);
}

#[test]
fn load_refuses_changed_missing_extra_and_odd_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::new(dir.path());
    let build = || {
        store.build_native(Path::new("/bin/true"), "t").unwrap();
        store.load("t").unwrap()
    };
    let expect = |path: &str, problem: &str| {
        let err = store.load("t").unwrap_err();
        match &err {
            ImageError::Tampered {
                name,
                path: p,
                problem: pr,
            } => {
                assert_eq!(name, "t");
                assert_eq!(p, path, "{err}");
                assert!(pr.contains(problem), "{err}");
            }
            other => panic!("expected Tampered, got {other}"),
        }
    };

    // Changed: one byte appended.
    let loaded = build();
    let victim = loaded.image.files[0].path.clone();
    let host = loaded.rootfs.join(victim.trim_start_matches('/'));
    unlock(&host);
    let mut f = OpenOptions::new().append(true).open(&host).unwrap();
    f.write_all(b"x").unwrap();
    drop(f);
    expect(&victim, "changed");

    // Missing.
    let loaded = build();
    let host = loaded.rootfs.join(victim.trim_start_matches('/'));
    unlock(&host);
    fs::remove_file(&host).unwrap();
    expect(&victim, "missing");

    // Extra file.
    let loaded = build();
    fs::set_permissions(&loaded.rootfs, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(loaded.rootfs.join("extra"), b"").unwrap();
    expect("/extra", "not listed");

    // A link in place of a file, even to the right content.
    let loaded = build();
    let host = loaded.rootfs.join(victim.trim_start_matches('/'));
    unlock(&host);
    let copy = dir.path().join("copy");
    fs::copy(&host, &copy).unwrap();
    fs::remove_file(&host).unwrap();
    std::os::unix::fs::symlink(&copy, &host).unwrap();
    expect(&victim, "symbolic link");

    // A manifest that names another image, or lists a path outside the root.
    let loaded = build();
    let manifest = store.root().join("t").join(IMAGE_TOML);
    let text = fs::read_to_string(&manifest).unwrap();
    fs::set_permissions(&manifest, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(
        &manifest,
        text.replacen("name = \"t\"", "name = \"other\"", 1),
    )
    .unwrap();
    assert!(matches!(store.load("t"), Err(ImageError::Manifest { .. })));
    let mut image = loaded.image.clone();
    image.files[0].path = "/../../etc/shadow".into();
    fs::write(&manifest, toml::to_string(&image).unwrap()).unwrap();
    let err = store.load("t").unwrap_err();
    assert!(err.to_string().contains("'..'"), "{err}");
    // The same image, its digest edited to match nothing.
    let mut image = loaded.image;
    image.files[0].sha256 = "00".repeat(32);
    fs::write(&manifest, toml::to_string(&image).unwrap()).unwrap();
    expect(&victim, "changed");

    assert!(matches!(
        store.load("nope"),
        Err(ImageError::NotFound { .. })
    ));
}

#[test]
fn bad_names_are_refused_and_failed_builds_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::new(dir.path());
    let long = "a".repeat(65);
    for name in [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "../x",
        "sp ace",
        long.as_str(),
    ] {
        let err = store
            .build_native(Path::new("/bin/true"), name)
            .unwrap_err();
        assert!(
            matches!(err, ImageError::InvalidName { .. }),
            "{name:?}: {err}"
        );
        assert!(store.load(name).is_err());
    }
    // A script is not a native program; a build that fails leaves nothing.
    let script = dir.path().join("script");
    fs::write(&script, "#!/bin/sh\n").unwrap();
    let err = store.build_native(&script, "s").unwrap_err();
    assert!(matches!(err, ImageError::NotElf { .. }), "{err}");
    let err = store.build_python3(&script, "p").unwrap_err();
    assert!(matches!(err, ImageError::NotElf { .. }), "{err}");
    assert!(err.to_string().contains("pyenv shim"), "{err}");
    assert!(!store.root().exists() || entries(store.root()).is_empty());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_failure_during_the_copy_removes_the_staging_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::new(dir.path());
    let src = dir.path().join("gone");
    fs::write(&src, b"x").unwrap();
    let mut plan = Plan::default();
    plan.add("t", Path::new("/a/one"), Path::new("/bin/true"))
        .unwrap();
    plan.add("t", Path::new("/b/gone"), &src).unwrap();
    fs::remove_file(&src).unwrap();
    let err = store
        .build("t", vec!["./program".into()], &plan)
        .unwrap_err();
    assert!(err.to_string().contains("gone"), "{err}");
    assert!(
        entries(store.root()).is_empty(),
        "{:?}",
        entries(store.root())
    );
    // Two different files at one path are refused when planned.
    let err = plan
        .add("t", Path::new("/a/one"), Path::new("/etc/hostname"))
        .unwrap_err();
    assert!(err.to_string().contains("/a/one"), "{err}");
    assert!(plan.add("t", Path::new("relative"), &src).is_err());
    assert!(plan.add("t", Path::new("/a/../b"), &src).is_err());
}
