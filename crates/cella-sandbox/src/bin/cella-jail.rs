//! `cella-jail`: the jailer of the sandbox backend (see `docs/sandbox.md`). It reads a
//! `JailSpec` as JSON on stdin and runs it; the `cella` binary offers the same entrypoint
//! when started under the name `cella-jail`.

fn main() -> std::process::ExitCode {
    cella_sandbox::jail::main()
}
