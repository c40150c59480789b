//! Progress bars for long file operations: on stderr, only when stderr is a terminal and
//! the file is large enough for a bar to be worth drawing.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Files below this size finish too fast for a bar to help: 4 MiB.
pub(crate) const MIN_BYTES: u64 = 4 * 1024 * 1024;

/// A byte progress bar labelled `what`, or `None` when there should be none.
pub(crate) fn bar(len: u64, what: &str) -> Option<ProgressBar> {
    if len < MIN_BYTES || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    Some(bar)
}

/// A client progress callback that moves `bar`, or `None` without a bar.
pub(crate) fn callback(bar: Option<&ProgressBar>) -> Option<cella_client::Progress> {
    let bar = bar?.clone();
    Some(Box::new(move |n| bar.set_position(n)))
}
