//! What the tests that run a real `cella serve` child share.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A `cella serve` child, killed on drop unless it exited.
pub(crate) struct Serve(pub(crate) Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `serve` (a `cella --json serve …` command the caller has set up) with its
/// stdout piped, and returns it with the first line it printed: the JSON object that
/// says where it listens, or what it printed instead.
pub(crate) fn start(mut serve: Command) -> (Serve, String) {
    let mut child = Serve(serve.stdout(Stdio::piped()).spawn().unwrap());
    let mut first = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    (child, first)
}
