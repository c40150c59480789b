//! [`LogBuffer`]: a function's log, bounded in lines and bytes.
//!
//! Invariants: the kept lines are a prefix of what the function logged (once one line is
//! dropped, every later line is dropped too, so the log never has holes); they number at
//! most [`MAX_LOG_LINES`], total at most [`MAX_LOG_BYTES`], and each is at most
//! [`MAX_LOG_LINE_BYTES`]. [`LogBuffer::into_lines`] appends one `… N lines dropped` line
//! beyond those bounds when anything was dropped.

use std::fmt;

/// Most lines kept. The log is stored with the task's result and returned with every task
/// query, so it must stay small; a thousand lines is ample for diagnostics.
pub const MAX_LOG_LINES: usize = 1000;
/// Most bytes kept over all lines (64 KiB), for the same reason: it bounds the task record.
pub const MAX_LOG_BYTES: usize = 64 * 1024;
/// Longest line kept (4 KiB); longer lines are cut and end in `…`, so that one runaway
/// line cannot use the whole byte budget.
pub const MAX_LOG_LINE_BYTES: usize = 4 * 1024;

/// Marks a line that was cut at [`MAX_LOG_LINE_BYTES`].
const CUT_MARK: &str = "…";

/// A bounded function log that counts what it dropped.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct LogBuffer {
    lines: Vec<String>,
    bytes: usize,
    dropped: u64,
}

impl LogBuffer {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `line`, cut to [`MAX_LOG_LINE_BYTES`], unless a bound is reached: then it
    /// is counted as dropped, as is every later line.
    pub fn push(&mut self, line: &str) {
        let line = cut_line(line);
        let fits = self.dropped == 0
            && self.lines.len() < MAX_LOG_LINES
            && self.bytes + line.len() <= MAX_LOG_BYTES;
        if fits {
            self.bytes += line.len();
            self.lines.push(line);
        } else {
            self.dropped += 1;
        }
    }

    /// The lines kept so far.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// How many lines were dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The kept lines, followed by one `… N lines dropped` line if any were dropped.
    pub fn into_lines(mut self) -> Vec<String> {
        match self.dropped {
            0 => {}
            1 => self.lines.push("… 1 line dropped".to_owned()),
            n => self.lines.push(format!("… {n} lines dropped")),
        }
        self.lines
    }
}

/// Counts only: log lines can carry the function's view of private data.
impl fmt::Debug for LogBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogBuffer")
            .field("lines", &self.lines.len())
            .field("bytes", &self.bytes)
            .field("dropped", &self.dropped)
            .finish()
    }
}

fn cut_line(line: &str) -> String {
    if line.len() <= MAX_LOG_LINE_BYTES {
        return line.to_owned();
    }
    let end = line.floor_char_boundary(MAX_LOG_LINE_BYTES - CUT_MARK.len());
    format!("{}{CUT_MARK}", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_under_the_bounds() {
        let mut log = LogBuffer::new();
        log.push("one");
        log.push("two");
        assert_eq!(log.lines(), ["one", "two"]);
        assert_eq!(log.dropped(), 0);
        assert_eq!(log.into_lines(), ["one", "two"]);
    }

    #[test]
    fn line_bound_drops_and_reports() {
        let mut log = LogBuffer::new();
        for i in 0..MAX_LOG_LINES + 5 {
            log.push(&i.to_string());
        }
        assert_eq!(log.lines().len(), MAX_LOG_LINES);
        assert_eq!(log.dropped(), 5);
        let lines = log.into_lines();
        assert_eq!(lines.len(), MAX_LOG_LINES + 1);
        assert_eq!(lines[MAX_LOG_LINES - 1], (MAX_LOG_LINES - 1).to_string());
        assert_eq!(lines[MAX_LOG_LINES], "… 5 lines dropped");
    }

    #[test]
    fn byte_bound_drops_and_keeps_a_prefix() {
        let mut log = LogBuffer::new();
        let big = "x".repeat(MAX_LOG_LINE_BYTES);
        let fitting = MAX_LOG_BYTES / MAX_LOG_LINE_BYTES;
        for _ in 0..fitting {
            log.push(&big);
        }
        log.push("y");
        // A short line after a drop is dropped too, so the log has no holes.
        log.push("");
        assert_eq!(log.lines().len(), fitting);
        assert_eq!(log.dropped(), 2);
        let lines = log.into_lines();
        assert_eq!(lines.last().map(String::as_str), Some("… 2 lines dropped"));
        let kept: usize = lines[..fitting].iter().map(String::len).sum();
        assert!(kept <= MAX_LOG_BYTES);
    }

    #[test]
    fn one_drop_is_singular() {
        let mut log = LogBuffer::new();
        for _ in 0..=MAX_LOG_LINES {
            log.push("l");
        }
        assert_eq!(
            log.into_lines().last().map(String::as_str),
            Some("… 1 line dropped")
        );
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let mut log = LogBuffer::new();
        let long = "é".repeat(MAX_LOG_LINE_BYTES);
        log.push(&long);
        let kept = &log.lines()[0];
        assert!(kept.len() <= MAX_LOG_LINE_BYTES, "{}", kept.len());
        assert!(kept.ends_with(CUT_MARK));
        assert!(kept.trim_end_matches(CUT_MARK).chars().all(|c| c == 'é'));
        assert_eq!(log.dropped(), 0);
    }
}
