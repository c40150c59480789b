//! [`TaskIo`]: a function's decrypted inputs in, its plaintext outputs out.
//!
//! Invariants: the set of input slots and the set of output slots are fixed when the
//! `TaskIo` is built; a function can only replace the content of a declared output slot,
//! never with more than [`IoLimits::max_output_bytes`], and never so that all its
//! outputs together hold more than [`IoLimits::max_total_output_bytes`]. There is no path from here
//! to the network or to host files. `Debug` shows slot names and sizes, never contents.

use std::collections::BTreeMap;
use std::fmt;

/// Default per-slot output limit: 64 MiB. A task's outputs sit in memory as plaintext
/// until the platform encrypts them, so this bounds what one task can pin on a node while
/// leaving room for the joined tables and intersections that builtins produce.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;

/// Default cap on all of a task's outputs together: 256 MiB, four slots at the per-slot
/// default. Without it a function with many slots pins slots × the per-slot cap (64
/// slots of 256 MiB would be 16 GiB) of plaintext on the node.
pub const DEFAULT_MAX_TOTAL_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Limits on what a function may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoLimits {
    /// Largest content of one output slot, in bytes.
    pub max_output_bytes: u64,
    /// Largest content of all output slots together, in bytes.
    pub max_total_output_bytes: u64,
    /// Whose cap [`IoLimits::max_total_output_bytes`] is, named when it is hit.
    pub total_cap: OutputCap,
}

/// Whose setting a task's total output cap is: a task over it fails naming it, so that
/// whoever owns that setting knows what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputCap {
    /// The node's (`cella serve --max-task-output-bytes`).
    #[default]
    Node,
    /// The function's own `max_output_bytes`, set when it is registered or updated,
    /// never above the node's.
    Function,
}

impl std::fmt::Display for OutputCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputCap::Node => "the node's output cap (--max-task-output-bytes)",
            OutputCap::Function => "the function's output cap (its max_output_bytes)",
        })
    }
}

impl IoLimits {
    /// `max_output_bytes` per slot, and the default total cap (no lower than that).
    pub fn per_slot(max_output_bytes: u64) -> Self {
        Self {
            max_output_bytes,
            max_total_output_bytes: DEFAULT_MAX_TOTAL_OUTPUT_BYTES.max(max_output_bytes),
            total_cap: OutputCap::Node,
        }
    }

    /// A task's limits: `max_output_bytes` per slot, and in all the lower of the node's
    /// cap and the function's own (`None`: the node's), named as whose it is.
    pub fn for_task(max_output_bytes: u64, node_total: u64, function_total: Option<u64>) -> Self {
        let (max_total_output_bytes, total_cap) = match function_total {
            Some(f) if f <= node_total => (f, OutputCap::Function),
            _ => (node_total, OutputCap::Node),
        };
        Self {
            max_output_bytes,
            max_total_output_bytes,
            total_cap,
        }
    }
}

/// [`DEFAULT_MAX_OUTPUT_BYTES`] per output slot, [`DEFAULT_MAX_TOTAL_OUTPUT_BYTES`] in all.
impl Default for IoLimits {
    fn default() -> Self {
        Self {
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_total_output_bytes: DEFAULT_MAX_TOTAL_OUTPUT_BYTES,
            total_cap: OutputCap::Node,
        }
    }
}

/// A function tried to write where or what it may not. These are the function's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// A write to a slot the function does not declare.
    #[error("no output slot {slot:?}; declared output slots: [{declared}]")]
    UnknownOutputSlot {
        /// The slot written to.
        slot: String,
        /// The declared output slots, comma-separated.
        declared: String,
    },
    /// A write larger than the per-slot limit.
    #[error(
        "output slot {slot:?} would hold {size} bytes, over the limit of {limit} bytes per slot"
    )]
    OutputTooLarge {
        /// The slot written to.
        slot: String,
        /// The size of the rejected content.
        size: u64,
        /// The limit, [`IoLimits::max_output_bytes`].
        limit: u64,
    },
    /// A write that would take all outputs together over the task's total cap.
    #[error(
        "the task's outputs would hold {total} bytes in all (output slot {slot:?} holding {size}), over {cap} of {limit} bytes"
    )]
    TotalOutputTooLarge {
        /// Whose cap it is.
        cap: OutputCap,
        /// The slot written to.
        slot: String,
        /// The size of the rejected content.
        size: u64,
        /// What all outputs would hold with it.
        total: u64,
        /// The limit, [`IoLimits::max_total_output_bytes`].
        limit: u64,
    },
}

/// Decrypted inputs in, plaintext outputs out; no network, no host files.
#[derive(Default)]
pub struct TaskIo {
    inputs: BTreeMap<String, Vec<u8>>,
    outputs: BTreeMap<String, Vec<u8>>,
    limits: IoLimits,
}

impl TaskIo {
    /// A `TaskIo` with these plaintext inputs by slot and these declared output slots
    /// (each starts empty; a name given twice is one slot).
    pub fn new(
        inputs: BTreeMap<String, Vec<u8>>,
        output_slots: impl IntoIterator<Item = String>,
        limits: IoLimits,
    ) -> Self {
        Self {
            inputs,
            outputs: output_slots.into_iter().map(|s| (s, Vec::new())).collect(),
            limits,
        }
    }

    /// The plaintext of input `slot`, if the task has that input.
    pub fn input(&self, slot: &str) -> Option<&[u8]> {
        self.inputs.get(slot).map(Vec::as_slice)
    }

    /// The input slot names, sorted.
    pub fn input_slots(&self) -> impl Iterator<Item = &str> {
        self.inputs.keys().map(String::as_str)
    }

    /// How many input slots the task has.
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// The declared output slot names, sorted.
    pub fn output_slots(&self) -> impl Iterator<Item = &str> {
        self.outputs.keys().map(String::as_str)
    }

    /// What output `slot` holds so far (empty until written), if it is declared.
    pub fn output(&self, slot: &str) -> Option<&[u8]> {
        self.outputs.get(slot).map(Vec::as_slice)
    }

    /// The limits this `TaskIo` enforces.
    pub fn limits(&self) -> IoLimits {
        self.limits
    }

    /// Total size of all inputs, in bytes.
    pub fn input_bytes(&self) -> u64 {
        total_len(&self.inputs)
    }

    /// Total size of all outputs written so far, in bytes.
    pub fn output_bytes(&self) -> u64 {
        total_len(&self.outputs)
    }

    /// Sets the content of output `slot`, replacing what it held.
    ///
    /// # Errors
    ///
    /// [`IoError::UnknownOutputSlot`] when `slot` is not declared,
    /// [`IoError::OutputTooLarge`] when `data` is over [`IoLimits::max_output_bytes`],
    /// [`IoError::TotalOutputTooLarge`] when the outputs would hold more than
    /// [`IoLimits::max_total_output_bytes`] with it; the slot keeps its previous content
    /// in every case.
    pub fn write_output(&mut self, slot: &str, data: Vec<u8>) -> Result<(), IoError> {
        let size = len_u64(&data);
        if !self.outputs.contains_key(slot) {
            return Err(IoError::UnknownOutputSlot {
                slot: slot.to_owned(),
                declared: self.outputs.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        if size > self.limits.max_output_bytes {
            return Err(IoError::OutputTooLarge {
                slot: slot.to_owned(),
                size,
                limit: self.limits.max_output_bytes,
            });
        }
        let others =
            total_len(&self.outputs).saturating_sub(len_u64(content_of(&self.outputs, slot)));
        let total = others.saturating_add(size);
        if total > self.limits.max_total_output_bytes {
            return Err(IoError::TotalOutputTooLarge {
                cap: self.limits.total_cap,
                slot: slot.to_owned(),
                size,
                total,
                limit: self.limits.max_total_output_bytes,
            });
        }
        if let Some(content) = self.outputs.get_mut(slot) {
            *content = data;
        }
        Ok(())
    }

    /// The outputs by slot: every declared slot, those never written empty.
    pub fn into_outputs(self) -> BTreeMap<String, Vec<u8>> {
        self.outputs
    }
}

/// Slot names and sizes only: the contents are other people's plaintext.
impl fmt::Debug for TaskIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes = |m: &BTreeMap<String, Vec<u8>>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.len()))
                .collect::<BTreeMap<_, _>>()
        };
        f.debug_struct("TaskIo")
            .field("input_sizes", &sizes(&self.inputs))
            .field("output_sizes", &sizes(&self.outputs))
            .field("limits", &self.limits)
            .finish()
    }
}

fn len_u64(data: &[u8]) -> u64 {
    u64::try_from(data.len()).unwrap_or(u64::MAX)
}

fn content_of<'a>(slots: &'a BTreeMap<String, Vec<u8>>, slot: &str) -> &'a [u8] {
    slots.get(slot).map_or(&[], Vec::as_slice)
}

fn total_len(slots: &BTreeMap<String, Vec<u8>>) -> u64 {
    slots
        .values()
        .fold(0u64, |sum, v| sum.saturating_add(len_u64(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(limit: u64) -> TaskIo {
        TaskIo::new(
            BTreeMap::from([
                ("zeta".to_owned(), b"zz".to_vec()),
                ("alpha".to_owned(), b"a".to_vec()),
            ]),
            ["out_b".to_owned(), "out_a".to_owned(), "out_b".to_owned()],
            IoLimits::per_slot(limit),
        )
    }

    #[test]
    fn slots_are_sorted_and_inputs_readable() {
        let io = io(10);
        assert_eq!(io.input_slots().collect::<Vec<_>>(), ["alpha", "zeta"]);
        assert_eq!(io.output_slots().collect::<Vec<_>>(), ["out_a", "out_b"]);
        assert_eq!(io.input("zeta"), Some(&b"zz"[..]));
        assert_eq!(io.input("missing"), None);
        assert_eq!(io.input_count(), 2);
        assert_eq!(io.input_bytes(), 3);
        assert_eq!(io.output_bytes(), 0);
    }

    #[test]
    fn unknown_slot_is_rejected_with_its_name() {
        let mut io = io(10);
        let err = io.write_output("alpha", b"x".to_vec()).unwrap_err();
        assert_eq!(
            err,
            IoError::UnknownOutputSlot {
                slot: "alpha".into(),
                declared: "out_a, out_b".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "no output slot \"alpha\"; declared output slots: [out_a, out_b]"
        );
    }

    #[test]
    fn over_limit_is_rejected_and_keeps_previous_content() {
        let mut io = io(4);
        io.write_output("out_a", b"1234".to_vec()).unwrap();
        let err = io.write_output("out_a", b"12345".to_vec()).unwrap_err();
        assert_eq!(
            err,
            IoError::OutputTooLarge {
                slot: "out_a".into(),
                size: 5,
                limit: 4
            }
        );
        assert!(err.to_string().contains("\"out_a\""));
        assert!(err.to_string().contains("limit of 4 bytes"));
        assert_eq!(io.output("out_a"), Some(&b"1234"[..]));
    }

    #[test]
    fn the_total_cap_counts_every_slot_and_a_rewrite_only_once() {
        let mut io = io(4);
        io.limits.max_total_output_bytes = 6;
        io.write_output("out_a", b"1234".to_vec()).unwrap();
        let err = io.write_output("out_b", b"123".to_vec()).unwrap_err();
        assert_eq!(
            err,
            IoError::TotalOutputTooLarge {
                cap: OutputCap::Node,
                slot: "out_b".into(),
                size: 3,
                total: 7,
                limit: 6
            }
        );
        assert!(
            err.to_string()
                .contains("over the node's output cap (--max-task-output-bytes) of 6 bytes"),
            "{err}"
        );
        assert_eq!(io.output("out_b"), Some(&b""[..]));
        // Replacing a slot's content counts its new size, not both.
        io.write_output("out_b", b"12".to_vec()).unwrap();
        io.write_output("out_a", b"1".to_vec()).unwrap();
        io.write_output("out_b", b"1234".to_vec()).unwrap();
        assert_eq!(io.output_bytes(), 5);
    }

    #[test]
    fn a_task_gets_the_lower_of_the_node_and_function_caps_named_as_whose() {
        let node = IoLimits::for_task(4, 100, None);
        assert_eq!(
            (node.max_total_output_bytes, node.total_cap),
            (100, OutputCap::Node)
        );
        let function = IoLimits::for_task(4, 100, Some(6));
        assert_eq!(
            (function.max_total_output_bytes, function.total_cap),
            (6, OutputCap::Function)
        );
        // A function cap above the node's (the node's was lowered since) gives the node's.
        let lowered = IoLimits::for_task(4, 5, Some(6));
        assert_eq!(
            (lowered.max_total_output_bytes, lowered.total_cap),
            (5, OutputCap::Node)
        );
        let mut io = io(4);
        io.limits = function;
        io.write_output("out_a", b"1234".to_vec()).unwrap();
        let err = io.write_output("out_b", b"123".to_vec()).unwrap_err();
        assert!(
            err.to_string()
                .contains("over the function's output cap (its max_output_bytes) of 6 bytes"),
            "{err}"
        );
    }

    #[test]
    fn per_slot_keeps_the_total_no_lower_than_one_slot() {
        assert_eq!(
            IoLimits::per_slot(10).max_total_output_bytes,
            DEFAULT_MAX_TOTAL_OUTPUT_BYTES
        );
        let big = DEFAULT_MAX_TOTAL_OUTPUT_BYTES * 2;
        assert_eq!(IoLimits::per_slot(big).max_total_output_bytes, big);
    }

    #[test]
    fn writes_replace_and_unwritten_slots_come_back_empty() {
        let mut io = io(10);
        io.write_output("out_b", b"first".to_vec()).unwrap();
        io.write_output("out_b", b"second".to_vec()).unwrap();
        assert_eq!(io.output_bytes(), 6);
        let outputs = io.into_outputs();
        assert_eq!(
            outputs,
            BTreeMap::from([
                ("out_a".to_owned(), Vec::new()),
                ("out_b".to_owned(), b"second".to_vec()),
            ])
        );
    }

    #[test]
    fn debug_shows_sizes_not_contents() {
        let io = TaskIo::new(
            BTreeMap::from([("in".to_owned(), b"secret".to_vec())]),
            [],
            IoLimits::default(),
        );
        let shown = format!("{io:?}");
        assert!(shown.contains("\"in\": 6"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(io.limits().max_output_bytes, DEFAULT_MAX_OUTPUT_BYTES);
    }
}
