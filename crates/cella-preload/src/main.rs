//! `cella-preload`: the entrypoint of a LibOS instance, a thin binary over the library's
//! [`cella_preload::entry::main`] (the `cella` binary runs the same function when started
//! under the name `cella-preload`). The environment it reads is documented there.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cella_preload::entry::main()
}
