//! `ordered_set_intersect`: two-party private set intersection.
//!
//! Exactly two inputs of one item per line; every output receives the sorted,
//! de-duplicated intersection, one item per line, and the return value is its size.
//! Items are compared and sorted as exact byte strings after trimming.

use std::collections::BTreeSet;

use super::text::lines;
use super::{Call, slot_list};
use crate::error::ExecutionError;

/// Intersects the items of the two inputs.
pub(super) fn ordered_set_intersect(call: &mut Call<'_>) -> Result<Vec<u8>, ExecutionError> {
    let inputs = call.inputs();
    let [(slot_a, data_a), (slot_b, data_b)] = inputs.as_slice() else {
        return Err(ExecutionError::function(format!(
            "ordered_set_intersect needs exactly 2 input slots, got {}: {}",
            inputs.len(),
            slot_list(&inputs)
        )));
    };
    let a = items(slot_a, data_a, call.cancel)?;
    let b = items(slot_b, data_b, call.cancel)?;

    let mut out = String::new();
    let mut size = 0usize;
    for item in a.intersection(&b) {
        out.push_str(item);
        out.push('\n');
        size += 1;
    }
    call.write_every_output(out.as_bytes())?;
    Ok(size.to_string().into_bytes())
}

/// The set of items in input `slot`.
fn items<'d>(
    slot: &'d str,
    data: &'d [u8],
    cancel: &'d std::sync::atomic::AtomicBool,
) -> Result<BTreeSet<&'d str>, ExecutionError> {
    lines(slot, data, cancel)
        .map(|line| line.map(|(_, item)| item))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::builtin::test_support::{every, function_message, run};

    const OUTS: [&str; 2] = ["for_alice", "for_bob"];

    #[tokio::test]
    async fn intersects_sorted_and_deduplicated() {
        let alice = b"carol\n  bob \r\ndave\n\nbob\nzoe\nAlice\n";
        let bob = b"zoe\nbob\nerin\ncarol\ncarol\nalice\n";
        let (outcome, outputs) = run(
            "ordered_set_intersect",
            &[],
            &[("alice", alice), ("bob", bob)],
            &OUTS,
        )
        .await
        .unwrap();
        assert_eq!(outcome.return_value, b"3");
        assert_eq!(outputs, every(&OUTS, b"bob\ncarol\nzoe\n"));
        assert_eq!(outcome.usage.output_bytes, 2 * 14);
    }

    #[tokio::test]
    async fn empty_intersection_gives_empty_outputs_and_zero() {
        let (outcome, outputs) = run(
            "ordered_set_intersect",
            &[],
            &[("a", b"x\ny\n"), ("b", b"")],
            &OUTS,
        )
        .await
        .unwrap();
        assert_eq!(outcome.return_value, b"0");
        assert_eq!(outputs, every(&OUTS, b""));
    }

    #[tokio::test]
    async fn wrong_slot_counts_are_function_errors() {
        let one = function_message(run("ordered_set_intersect", &[], &[("a", b"x")], &OUTS).await);
        assert_eq!(
            one,
            "ordered_set_intersect needs exactly 2 input slots, got 1: [a]"
        );
        let three = function_message(
            run(
                "ordered_set_intersect",
                &[],
                &[("a", b"x"), ("b", b"x"), ("c", b"x")],
                &OUTS,
            )
            .await,
        );
        assert_eq!(
            three,
            "ordered_set_intersect needs exactly 2 input slots, got 3: [a, b, c]"
        );
        let none = function_message(run("ordered_set_intersect", &[], &[], &OUTS).await);
        assert!(none.contains("got 0: []"), "{none}");
    }

    #[tokio::test]
    async fn bad_utf8_names_slot_and_line() {
        let message = function_message(
            run(
                "ordered_set_intersect",
                &[],
                &[("a", b"x\n"), ("b", b"x\n\n\xc3\x28\n")],
                &OUTS,
            )
            .await,
        );
        assert_eq!(
            message,
            "input \"b\" line 3: not valid UTF-8 (at byte 1 of the line)"
        );
    }

    #[tokio::test]
    async fn output_limit_is_enforced() {
        use crate::{ExecutionError, Executor, IoError, IoLimits, TaskIo};
        let mut io = TaskIo::new(
            [
                ("a".to_owned(), b"long-item\n".to_vec()),
                ("b".to_owned(), b"long-item\n".to_vec()),
            ]
            .into(),
            ["out".to_owned()],
            IoLimits::per_slot(4),
        );
        let err = crate::builtin::BuiltinExecutor::new()
            .execute(
                &crate::builtin::test_support::task("ordered_set_intersect", &[]),
                &mut io,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ExecutionError::Io(IoError::OutputTooLarge {
                slot: "out".into(),
                size: 10,
                limit: 4
            })
        );
    }
}
