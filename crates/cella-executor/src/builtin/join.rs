//! `private_join_and_compute`: joins n ≥ 2 parties' `id,balance` tables on id and sums
//! the balances of the ids every party has.
//!
//! Input is simple CSV without quoting: one `id,balance` record per line, an optional
//! `id,balance` header as the first non-empty line. Sums use checked `i64` arithmetic.
//! Error messages never quote a valid id: they reach every participant.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::atomic::AtomicBool;

use super::text::{lines, quote};
use super::{Call, slot_list};
use crate::error::ExecutionError;

/// The optional header line's fields.
const HEADER: [&str; 2] = ["id", "balance"];

/// Joins the inputs on id and sums balances over the common ids.
pub(super) fn private_join_and_compute(call: &mut Call<'_>) -> Result<Vec<u8>, ExecutionError> {
    let inputs = call.inputs();
    if inputs.len() < 2 {
        return Err(ExecutionError::function(format!(
            "private_join_and_compute needs at least 2 input slots, got {}: {}",
            inputs.len(),
            slot_list(&inputs)
        )));
    }
    let mut notes = Vec::new();
    let mut parties = Vec::with_capacity(inputs.len());
    for (slot, data) in &inputs {
        let (rows, had_header) = table(slot, data, call.cancel)?;
        if had_header {
            notes.push(format!("input {slot:?}: header line skipped"));
        }
        parties.push(rows);
    }
    let Some((first, others)) = parties.split_first() else {
        return Err(ExecutionError::internal("no parties after the count check"));
    };

    let mut out = String::new();
    let mut total: i64 = 0;
    for (id, &balance) in first {
        let mut sum = balance;
        let mut common = true;
        for party in others {
            let Some(&other) = party.get(id) else {
                common = false;
                break;
            };
            sum = sum.checked_add(other).ok_or_else(|| {
                ExecutionError::function("the sum of one common id's balances overflows i64")
            })?;
        }
        if common {
            total = total.checked_add(sum).ok_or_else(|| {
                ExecutionError::function("the grand total over the common ids overflows i64")
            })?;
            out.push_str(&format!("{id},{sum}\n"));
        }
    }
    call.write_every_output(out.as_bytes())?;
    for note in &notes {
        call.log.push(note);
    }
    Ok(total.to_string().into_bytes())
}

/// The `id → balance` table of input `slot`, and whether it began with a header.
fn table<'d>(
    slot: &'d str,
    data: &'d [u8],
    cancel: &'d AtomicBool,
) -> Result<(BTreeMap<&'d str, i64>, bool), ExecutionError> {
    let mut had_header = false;
    let mut rows: BTreeMap<&str, (i64, usize)> = BTreeMap::new();
    let mut first = true;
    for line in lines(slot, data, cancel) {
        let (number, text) = line?;
        let fail = |what: String| {
            ExecutionError::function(format!("input {slot:?} line {number}: {what}"))
        };
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        if std::mem::take(&mut first) && fields == HEADER {
            had_header = true;
            continue;
        }
        let [id, balance] = fields.as_slice() else {
            return Err(fail(format!(
                "expected 2 fields `id,balance`, found {} in {}",
                fields.len(),
                quote(text)
            )));
        };
        if id.is_empty() {
            return Err(fail("empty id".to_owned()));
        }
        let balance: i64 = balance.parse().map_err(|_| {
            fail(format!(
                "balance {} is not an integer from {} to {}",
                quote(balance),
                i64::MIN,
                i64::MAX
            ))
        })?;
        match rows.entry(id) {
            Entry::Vacant(v) => {
                v.insert((balance, number));
            }
            Entry::Occupied(o) => {
                return Err(fail(format!(
                    "repeats the id of line {}; each id may appear once per input",
                    o.get().1
                )));
            }
        }
    }
    let rows = rows.into_iter().map(|(id, (b, _))| (id, b)).collect();
    Ok((rows, had_header))
}

#[cfg(test)]
mod tests {
    use crate::builtin::test_support::{every, function_message, run};

    const NAME: &str = "private_join_and_compute";
    const OUTS: [&str; 2] = ["out_a", "out_b"];

    async fn join(inputs: &[(&str, &[u8])]) -> Result<(Vec<u8>, Vec<u8>), crate::ExecutionError> {
        let (outcome, outputs) = run(NAME, &[], inputs, &OUTS).await?;
        assert_eq!(outputs["out_a"], outputs["out_b"]);
        Ok((outcome.return_value, outputs["out_a"].clone()))
    }

    #[tokio::test]
    async fn sums_common_ids_across_three_parties() {
        let bank = b"id,balance\nalice,100\nbob, -20\ncarol,5\r\n\ndave,7\n";
        let insurer = b"bob,30\n alice , 1\ncarol,0\n";
        let employer = b"carol,-5\nalice,10\nbob,0\nerin,99\n";
        let (total, out) = join(&[("bank", bank), ("insurer", insurer), ("employer", employer)])
            .await
            .unwrap();
        assert_eq!(out, b"alice,111\nbob,10\ncarol,0\n");
        assert_eq!(total, b"121");
        let (outcome, _) = run(NAME, &[], &[("bank", bank), ("insurer", insurer)], &[])
            .await
            .unwrap();
        assert_eq!(outcome.log, ["input \"bank\": header line skipped"]);
        let (outcome, outputs) = run(NAME, &[], &[("a", b"x,1\n"), ("b", b"x,2\n")], &OUTS)
            .await
            .unwrap();
        assert_eq!(outputs, every(&OUTS, b"x,3\n"));
        assert_eq!(outcome.return_value, b"3");
    }

    #[tokio::test]
    async fn no_common_ids_gives_empty_outputs_and_zero() {
        let (total, out) = join(&[("a", b"x,1\n"), ("b", b"id,balance\ny,2\n")])
            .await
            .unwrap();
        assert_eq!(out, b"");
        assert_eq!(total, b"0");
    }

    #[tokio::test]
    async fn header_is_only_skipped_on_the_first_line() {
        let message = function_message(join(&[("a", b"x,1\nid,balance\n"), ("b", b"x,1\n")]).await);
        assert_eq!(
            message,
            "input \"a\" line 2: balance \"balance\" is not an integer from -9223372036854775808 to 9223372036854775807"
        );
    }

    #[tokio::test]
    async fn needs_two_inputs() {
        let message = function_message(join(&[("only", b"x,1\n")]).await);
        assert_eq!(
            message,
            "private_join_and_compute needs at least 2 input slots, got 1: [only]"
        );
    }

    #[tokio::test]
    async fn bad_balance_names_slot_line_and_value() {
        let message = function_message(join(&[("a", b"x,1\n"), ("b", b"x,1\ny,12x\n")]).await);
        assert_eq!(
            message,
            "input \"b\" line 2: balance \"12x\" is not an integer from -9223372036854775808 to 9223372036854775807"
        );
        let message =
            function_message(join(&[("a", b"x,1\n"), ("b", b"x,9223372036854775808\n")]).await);
        assert!(message.starts_with("input \"b\" line 1: balance \"9223372036854775808\""));
    }

    #[tokio::test]
    async fn wrong_field_counts_and_empty_id() {
        let message = function_message(join(&[("a", b"x,1,2\n"), ("b", b"x,1\n")]).await);
        assert_eq!(
            message,
            "input \"a\" line 1: expected 2 fields `id,balance`, found 3 in \"x,1,2\""
        );
        let message = function_message(join(&[("a", b"x,1\n"), ("b", b"\n\nlonely\n")]).await);
        assert_eq!(
            message,
            "input \"b\" line 3: expected 2 fields `id,balance`, found 1 in \"lonely\""
        );
        let message = function_message(join(&[("a", b" ,1\n"), ("b", b"x,1\n")]).await);
        assert_eq!(message, "input \"a\" line 1: empty id");
    }

    #[tokio::test]
    async fn duplicate_id_names_slot_and_both_lines() {
        let message = function_message(
            join(&[("a", b"x,1\n"), ("b", b"id,balance\nx,1\ny,2\n x ,3\n")]).await,
        );
        assert_eq!(
            message,
            "input \"b\" line 4: repeats the id of line 2; each id may appear once per input"
        );
        // The same id in different inputs is the point of the join.
        assert!(join(&[("a", b"x,1\n"), ("b", b"x,1\n")]).await.is_ok());
    }

    #[tokio::test]
    async fn overflow_is_an_error() {
        let max = i64::MAX.to_string();
        let per_id = function_message(
            join(&[("a", format!("x,{max}\n").as_bytes()), ("b", b"x,1\n")]).await,
        );
        assert_eq!(per_id, "the sum of one common id's balances overflows i64");
        let total = function_message(
            join(&[
                ("a", format!("x,{max}\ny,1\n").as_bytes()),
                ("b", b"x,0\ny,0\n"),
            ])
            .await,
        );
        assert_eq!(total, "the grand total over the common ids overflows i64");
        // Negative extremes are fine until they overflow.
        let min = i64::MIN.to_string();
        let (sum, out) = join(&[("a", format!("x,{min}\n").as_bytes()), ("b", b"x,0\n")])
            .await
            .unwrap();
        assert_eq!(sum, min.as_bytes());
        assert_eq!(out, format!("x,{min}\n").as_bytes());
    }

    #[tokio::test]
    async fn bad_utf8_names_slot_and_line() {
        let message = function_message(join(&[("a", b"x,1\n\xff,2\n"), ("b", b"x,1\n")]).await);
        assert_eq!(
            message,
            "input \"a\" line 2: not valid UTF-8 (at byte 1 of the line)"
        );
    }
}
