//! Golden manifests (`tests/golden/*.toml`; `CELLA_UPDATE_GOLDEN=1` rewrites them) and
//! their structural checks against Gramine's documented schema.

use cella_gramine::manifest::{self, ManifestError};
use cella_gramine::schema::{self, verify_files};
use cella_gramine::{GramineConfig, Mode};
use cella_libos::RuntimeImage;
use cella_libos::image::ImageFile;

use crate::common::{Fixture, ROOT_PLACEHOLDER, manifest_dir, sgx_config};

/// The cases: file name, image, configuration.
fn cases(f: &Fixture) -> Vec<(&'static str, RuntimeImage, GramineConfig)> {
    let mut edmm = sgx_config();
    edmm.edmm_enable = true;
    edmm.debug = true;
    edmm.enclave_size = "8G".into();
    edmm.max_threads = 32;
    edmm.isv_prod_id = 3;
    edmm.isv_svn = 4;
    let direct = GramineConfig::defaults(Mode::Direct);
    vec![
        ("python3-sgx.toml", f.python3.clone(), sgx_config()),
        ("native-sgx.toml", f.native.clone(), sgx_config()),
        ("python3-edmm-debug.toml", f.python3.clone(), edmm),
        ("native-direct.toml", f.native.clone(), direct),
    ]
}

#[test]
fn generated_manifests_match_the_golden_files() {
    let f = Fixture::new();
    let update = std::env::var_os("CELLA_UPDATE_GOLDEN").is_some();
    for (name, image, config) in cases(&f) {
        let text = f.placeholder(&f.generate(&image, &config));
        let path = manifest_dir().join("tests/golden").join(name);
        if update {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (CELLA_UPDATE_GOLDEN=1 writes it)", path.display())
        });
        assert_eq!(
            text, golden,
            "{name} differs from its golden file (CELLA_UPDATE_GOLDEN=1 rewrites it after review)"
        );
    }
}

#[test]
fn golden_files_pass_the_structural_checks() {
    let f = Fixture::new();
    for (name, _, config) in cases(&f) {
        let path = manifest_dir().join("tests/golden").join(name);
        let golden = std::fs::read_to_string(&path).unwrap();
        // The golden file, with the fixture's paths put back, is a valid manifest whose
        // trusted files all exist with the stated hashes.
        let text = golden.replace(ROOT_PLACEHOLDER, f.root.to_str().unwrap());
        let checked =
            schema::check(&text, config.mode).unwrap_or_else(|p| panic!("{name}: {p:#?}"));
        verify_files(&checked).unwrap_or_else(|p| panic!("{name}: {p:#?}"));
        assert_eq!(checked.entrypoint, manifest::PRELOAD_PATH);
        // Every image file, the pre-load module, its libraries and the policy are trusted.
        let value: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            value["sgx"]["debug"].as_bool(),
            Some(config.debug),
            "{name}"
        );
        assert_eq!(
            value["sgx"]["edmm_enable"].as_bool(),
            Some(config.edmm_enable)
        );
        assert_eq!(
            value["sgx"]["enclave_size"].as_str(),
            Some(config.enclave_size.as_str())
        );
        assert_eq!(
            value["sgx"]["max_threads"].as_integer(),
            Some(i64::from(config.max_threads))
        );
        assert_eq!(value["sgx"]["remote_attestation"].as_str(), Some("dcap"));
        assert_eq!(
            value["sys"]["enable_sigterm_injection"].as_bool(),
            Some(true)
        );
        assert!(value["sgx"].get("allowed_files").is_none());
        let mounts: Vec<_> = checked
            .mounts
            .iter()
            .map(|(k, p)| format!("{k} {p}"))
            .collect();
        assert!(
            mounts.contains(&"encrypted /cella".to_owned()),
            "{mounts:?}"
        );
        assert!(mounts.contains(&"tmpfs /tmp".to_owned()), "{mounts:?}");
    }
}

#[test]
fn every_image_file_and_the_preload_module_are_trusted_with_their_hash() {
    let f = Fixture::new();
    let text = f.generate(&f.python3, &sgx_config());
    let checked = schema::check(&text, Mode::Sgx).unwrap();
    let rootfs = f.rootfs("python3");
    for file in &f.python3.files {
        let host = rootfs.join(&file.path[1..]);
        assert!(
            checked
                .trusted_files
                .iter()
                .any(|t| t.path == host && t.sha256 == file.sha256),
            "{} not trusted",
            file.path
        );
    }
    for host in [&f.preload.path, &f.policy.path] {
        assert!(checked.trusted_files.iter().any(|t| &t.path == host));
    }
    // The host libc differs from the image's at another path: both are there; the loader
    // the image already has is not mounted a second time.
    assert!(
        checked
            .mounts
            .iter()
            .any(|(_, p)| p == "/usr/lib/x86_64-linux-gnu/libc.so.6")
    );
    assert!(
        !checked
            .mounts
            .iter()
            .any(|(_, p)| p == "/lib64/ld-linux-x86-64.so.2")
    );
    // argv and env are fixed; only the launch parameters pass through.
    let value: toml::Table = toml::from_str(&text).unwrap();
    let env = value["loader"]["env"].as_table().unwrap();
    let passthrough: Vec<&str> = env
        .iter()
        .filter(|(_, v)| v.is_table())
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(passthrough, ["CELLA_PRELOAD_NONCE", "CELLA_PRELOAD_SOCKET"]);
    assert_eq!(env["CELLA_PRELOAD_WORK_DIR"].as_str(), Some("/cella"));
    assert!(value["loader"].get("insecure__use_cmdline_argv").is_none());
}

/// A change to a manifest's TOML.
type Edit = Box<dyn FnOnce(&mut toml::Table)>;

/// Applies `edit` to the TOML of a good manifest and returns the problems found.
fn problems_after(edit: impl FnOnce(&mut toml::Table), mode: Mode) -> Vec<String> {
    let f = Fixture::new();
    let config = if mode == Mode::Sgx {
        sgx_config()
    } else {
        GramineConfig::defaults(mode)
    };
    let mut value: toml::Table = toml::from_str(&f.generate(&f.python3, &config)).unwrap();
    edit(&mut value);
    schema::check(&toml::to_string(&value).unwrap(), mode).unwrap_err()
}

fn table<'a>(t: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    t.get_mut(key).and_then(toml::Value::as_table_mut).unwrap()
}

#[test]
fn the_structural_check_refuses_what_gramine_or_cella_forbids() {
    use toml::Value;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "sgx.allowed_files is forbidden",
            Box::new(|t| {
                table(t, "sgx").insert(
                    "allowed_files".into(),
                    Value::Array(vec![Value::String("file:/etc/passwd".into())]),
                );
            }),
        ),
        (
            "insecure options are forbidden",
            Box::new(|t| {
                table(t, "loader")
                    .insert("insecure__use_cmdline_argv".into(), Value::Boolean(true));
            }),
        ),
        (
            "insecure options are forbidden",
            Box::new(|t| {
                table(t, "loader").insert("insecure__use_host_env".into(), Value::Boolean(true));
            }),
        ),
        (
            "may come from the host",
            Box::new(|t| {
                let env = table(table(t, "loader"), "env");
                let mut pass = toml::Table::new();
                pass.insert("passthrough".into(), Value::Boolean(true));
                env.insert("LD_PRELOAD".into(), Value::Table(pass));
            }),
        ),
        (
            "sgx.max_threads: wrong type",
            Box::new(|t| {
                table(t, "sgx").insert("max_threads".into(), Value::String("16".into()));
            }),
        ),
        (
            "sgx.remote_attestation is required",
            Box::new(|t| {
                table(t, "sgx").remove("remote_attestation");
            }),
        ),
        (
            "sys.enable_sigterm_injection must be true",
            Box::new(|t| {
                table(t, "sys").insert("enable_sigterm_injection".into(), Value::Boolean(false));
            }),
        ),
        (
            "every file hashed here",
            Box::new(|t| {
                let files = table(t, "sgx")
                    .get_mut("trusted_files")
                    .and_then(Value::as_array_mut)
                    .unwrap();
                files.push(Value::String("file:/usr/lib/".into()));
            }),
        ),
        (
            "a chroot mount must be of one trusted file",
            Box::new(|t| {
                let mounts = table(t, "fs")
                    .get_mut("mounts")
                    .and_then(Value::as_array_mut)
                    .unwrap();
                let mut m = toml::Table::new();
                m.insert("type".into(), Value::String("chroot".into()));
                m.insert("path".into(), Value::String("/etc".into()));
                m.insert("uri".into(), Value::String("file:/etc".into()));
                mounts.push(Value::Table(m));
            }),
        ),
        (
            "is shared by every instance",
            Box::new(|t| {
                let mounts = table(t, "fs")
                    .get_mut("mounts")
                    .and_then(Value::as_array_mut)
                    .unwrap();
                for m in mounts.iter_mut().filter_map(Value::as_table_mut) {
                    if m.get("type").and_then(Value::as_str) == Some("encrypted") {
                        m.insert("key_name".into(), Value::String("_sgx_mrenclave".into()));
                    }
                }
            }),
        ),
        (
            "not a key a Cella manifest sets",
            Box::new(|t| {
                table(t, "sgx").insert("enclave_sise".into(), Value::String("1G".into()));
            }),
        ),
        (
            "sgx.file_check_policy",
            Box::new(|t| {
                table(t, "sgx").insert(
                    "file_check_policy".into(),
                    Value::String("allow_all_but_log".into()),
                );
            }),
        ),
        (
            "loader.argv[0] must be libos.entrypoint",
            Box::new(|t| {
                table(t, "loader").insert(
                    "argv".into(),
                    Value::Array(vec![Value::String("/bin/sh".into())]),
                );
            }),
        ),
        (
            "only \\\"error\\\" or \\\"none\\\"",
            Box::new(|t| {
                table(t, "loader").insert("log_level".into(), Value::String("trace".into()));
            }),
        ),
    ];
    for (expect, edit) in cases {
        let problems = problems_after(edit, Mode::Sgx);
        let expect = expect.replace("\\\"", "\"");
        assert!(
            problems.iter().any(|p| p.contains(&expect)),
            "expected {expect:?} in {problems:#?}"
        );
    }
    // The evidence endpoint is a launch parameter only without SGX.
    let evidence = |t: &mut toml::Table| {
        let env = table(table(t, "loader"), "env");
        let mut pass = toml::Table::new();
        pass.insert("passthrough".into(), Value::Boolean(true));
        env.insert("CELLA_PRELOAD_EVIDENCE".into(), Value::Table(pass));
    };
    assert!(
        problems_after(evidence, Mode::Sgx)
            .iter()
            .any(|p| p.contains("CELLA_PRELOAD_EVIDENCE"))
    );
}

#[test]
fn a_changed_or_missing_trusted_file_is_found() {
    let f = Fixture::new();
    let text = f.generate(&f.python3, &sgx_config());
    let checked = schema::check(&text, Mode::Sgx).unwrap();
    verify_files(&checked).unwrap();
    let python = f.rootfs("python3").join("usr/bin/python3");
    std::fs::write(&python, b"another interpreter").unwrap();
    std::fs::remove_file(&f.policy.path).unwrap();
    let problems = verify_files(&checked).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("python3") && p.contains("the manifest says"))
    );
    assert!(problems.iter().any(|p| p.contains("executor-policy.toml")));
}

#[test]
fn generation_refuses_conflicts_and_unsafe_paths() {
    let f = Fixture::new();
    let rootfs = f.rootfs("python3");
    // A pre-load library at a path where the image has other bytes.
    let mut image = f.python3.clone();
    image.files.push(ImageFile {
        path: "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1".into(),
        sha256: "00".repeat(32),
    });
    let err = manifest::generate(&f.input(&image, &rootfs), &sgx_config()).unwrap_err();
    assert!(matches!(err, ManifestError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("libgcc_s.so.1"));
    for bad in [
        "/cella/x",
        "/tmp/x",
        "/opt/cella/cella-preload",
        "/usr/../etc/x",
        "usr/x",
        "/",
    ] {
        let mut image = f.python3.clone();
        image.files.push(ImageFile {
            path: bad.into(),
            sha256: "00".repeat(32),
        });
        let err = manifest::generate(&f.input(&image, &rootfs), &sgx_config()).unwrap_err();
        assert!(matches!(err, ManifestError::Path { .. }), "{bad}: {err}");
    }
    let relative = std::path::Path::new("images/python3/rootfs");
    let err = manifest::generate(&f.input(&f.python3, relative), &sgx_config()).unwrap_err();
    assert!(err.to_string().contains("not absolute"), "{err}");
    let mut image = f.python3.clone();
    image.name = "../x".into();
    assert!(matches!(
        manifest::generate(&f.input(&image, &rootfs), &sgx_config()),
        Err(ManifestError::Image(_))
    ));
}
