//! `cella_gramine::node::build_executor`, as the node calls it for `backend = "gramine"`:
//! from the LibOS configuration file's text to an executor, and its start-up errors.

use cella_gramine::node::build_executor;
use cella_libos::config::BackendKind;
use cella_libos::{ExecutorConfig, LibosConfig, PoolConfig, RuntimeImage};

use crate::common::{Fixture, preload_binary, standin};
use crate::signing::attestation;

fn config_text(f: &Fixture, extra: &str) -> String {
    format!(
        "backend = \"gramine\"\n\n[gramine]\nmode = \"direct\"\nallow_simulation = true\n\
         gramine_direct = \"{}\"\npreload = \"{}\"\nlibos = \"{}\"\n{extra}\n\
         [[runtime]]\nname = \"native\"\nargv = [\"./program\"]\n",
        standin("standin-gramine-direct").display(),
        preload_binary().display(),
        f.libos.path.display(),
    )
}

fn build(f: &Fixture, text: &str) -> Result<cella_libos::LibosExecutor, String> {
    let libos = LibosConfig::from_toml_str(text).map_err(|e| e.to_string())?;
    assert_eq!(libos.backend, BackendKind::Gramine);
    build_executor(
        &f.root.join("data"),
        &libos.gramine.clone().unwrap_or_default().0,
        Vec::new(),
        &libos.runtimes,
        attestation(),
        ExecutorConfig {
            pool: PoolConfig { warm: 0, max: 1 },
            ..ExecutorConfig::default()
        },
    )
}

#[test]
fn a_node_configuration_builds_the_executor() {
    let f = Fixture::new();
    let executor = build(&f, &config_text(&f, "")).unwrap();
    assert_eq!(executor.runtimes().collect::<Vec<_>>(), ["native"]);
    assert!(executor.measurement("native").is_some());
    // The manifest is where the node keeps it, and passes the checks.
    let manifest = f
        .root
        .join("data/libos/gramine/images/native/instance.manifest");
    let text = std::fs::read_to_string(manifest).unwrap();
    cella_gramine::schema::check(&text, cella_gramine::Mode::Direct).unwrap();
}

#[test]
fn configuration_mistakes_stop_the_node_at_start() {
    let f = Fixture::new();
    let e = build(&f, &config_text(&f, "max_thread = 8")).unwrap_err();
    assert!(e.contains("max_thread"), "{e}");
    let e = build(
        &f,
        &config_text(&f, "").replace("allow_simulation = true", "allow_simulation = false"),
    )
    .unwrap_err();
    assert!(e.contains("allow_simulation"), "{e}");
    let e = build(
        &f,
        &config_text(&f, "").replace("mode = \"direct\"", "mode = \"sgx\""),
    )
    .unwrap_err();
    assert!(e.contains("signing_key"), "{e}");
    // backend = "gramine" without its section is refused by the file's parser.
    let e = build(
        &f,
        "backend = \"gramine\"\n[[runtime]]\nname = \"n\"\nargv = [\"x\"]\n",
    )
    .unwrap_err();
    assert!(e.contains("[gramine]"), "{e}");
    // An inline runtime may not list files: they would have no rootfs.
    let mut image = RuntimeImage::native();
    image.files.push(cella_libos::image::ImageFile {
        path: "/bin/x".into(),
        sha256: "00".repeat(32),
    });
    let section = LibosConfig::from_toml_str(&config_text(&f, ""))
        .unwrap()
        .gramine
        .unwrap();
    let e = build_executor(
        &f.root.join("data"),
        &section.0,
        Vec::new(),
        &[image],
        attestation(),
        ExecutorConfig::default(),
    )
    .unwrap_err();
    assert!(e.contains("may not list files"), "{e}");
}
