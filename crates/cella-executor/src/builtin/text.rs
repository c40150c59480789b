//! Line-oriented text inputs, shared by the builtins.
//!
//! Lines are split on `\n`, numbered from 1 as a text editor shows them, stripped of
//! surrounding whitespace (so `\r\n` endings work), and skipped when empty. A UTF-8 byte
//! order mark at the start of line 1 is ignored. Every error names the slot and the line.

use std::sync::atomic::{AtomicBool, Ordering};

use super::cancelled;
use crate::error::ExecutionError;

/// Most characters of an offending value quoted in an error message. Error messages reach
/// every participant of the task, so a bad value is shown only as far as needed to find it.
pub(super) const MAX_QUOTED_CHARS: usize = 32;

/// The non-empty, trimmed lines of input `slot` with their 1-based line numbers.
///
/// Each item is an error instead when the line is not UTF-8 or the run was cancelled;
/// callers stop at the first error.
pub(super) fn lines<'d>(
    slot: &'d str,
    data: &'d [u8],
    cancel: &'d AtomicBool,
) -> impl Iterator<Item = Result<(usize, &'d str), ExecutionError>> + 'd {
    data.split(|&b| b == b'\n')
        .enumerate()
        .filter_map(move |(index, raw)| {
            if cancel.load(Ordering::Relaxed) {
                return Some(Err(cancelled()));
            }
            let number = index + 1;
            let text = match std::str::from_utf8(raw) {
                Ok(text) => text,
                Err(e) => {
                    return Some(Err(ExecutionError::function(format!(
                        "input {slot:?} line {number}: not valid UTF-8 (at byte {} of the line)",
                        e.valid_up_to() + 1
                    ))));
                }
            };
            let text = if index == 0 {
                text.strip_prefix('\u{feff}').unwrap_or(text)
            } else {
                text
            };
            let text = text.trim();
            (!text.is_empty()).then_some(Ok((number, text)))
        })
}

/// `value` in quotes for an error message, cut to [`MAX_QUOTED_CHARS`] characters.
pub(super) fn quote(value: &str) -> String {
    let mut chars = value.chars();
    let shown: String = chars.by_ref().take(MAX_QUOTED_CHARS).collect();
    if chars.next().is_some() {
        format!("{shown:?}…")
    } else {
        format!("{shown:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(data: &[u8]) -> Result<Vec<(usize, &str)>, ExecutionError> {
        static NEVER: AtomicBool = AtomicBool::new(false);
        lines("in", data, &NEVER).collect()
    }

    #[test]
    fn numbers_trims_and_skips_empty_lines() {
        let got = collect(b"\xef\xbb\xbf a \r\n\n\t\nb\n  c  ").unwrap();
        assert_eq!(got, [(1, "a"), (4, "b"), (5, "c")]);
        assert_eq!(collect(b"").unwrap(), []);
    }

    #[test]
    fn bad_utf8_names_slot_and_line() {
        let err = collect(b"ok\nfine\nba\xffd\n").unwrap_err();
        assert_eq!(
            err,
            ExecutionError::function(
                "input \"in\" line 3: not valid UTF-8 (at byte 3 of the line)"
            )
        );
    }

    #[test]
    fn cancellation_stops_the_iteration() {
        let flag = AtomicBool::new(true);
        let err = lines("in", b"a\n", &flag).next().unwrap().unwrap_err();
        assert!(err.is_platform_fault());
    }

    #[test]
    fn quote_cuts_long_values() {
        assert_eq!(quote("12x"), "\"12x\"");
        let long = "y".repeat(MAX_QUOTED_CHARS + 1);
        assert_eq!(
            quote(&long),
            format!("\"{}\"…", "y".repeat(MAX_QUOTED_CHARS))
        );
    }
}
