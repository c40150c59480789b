//! `multiparty_statistics`: count, mean and population variance over the numbers of
//! n ≥ 1 parties, without any party seeing another's numbers.
//!
//! Uses Welford's online algorithm, which stays accurate where the naive sum-of-squares
//! formula cancels catastrophically. Values must be finite `f64`; so must the results.

use super::Call;
use super::text::{lines, quote};
use crate::error::ExecutionError;

/// The argument giving the number of decimals printed.
const DECIMALS: &str = "decimals";
/// Decimals printed when the task sets none.
const DEFAULT_DECIMALS: usize = 6;
/// Most decimals accepted: an `f64` holds at most 17 significant decimal digits, so more
/// decimals would print only noise for any value of magnitude 1 or more.
const MAX_DECIMALS: usize = 17;

/// Welford's running count, mean and sum of squared deviations.
#[derive(Default)]
struct Welford {
    count: u64,
    mean: f64,
    m2: f64,
}

impl Welford {
    fn add(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    fn variance(&self) -> f64 {
        self.m2 / self.count as f64
    }
}

/// Computes `count,mean,variance` over every input's values.
pub(super) fn multiparty_statistics(call: &mut Call<'_>) -> Result<Vec<u8>, ExecutionError> {
    let decimals = decimals(call.argument(DECIMALS))?;
    let inputs = call.inputs();
    if inputs.is_empty() {
        return Err(ExecutionError::function(
            "multiparty_statistics needs at least 1 input slot, got 0",
        ));
    }
    let mut stats = Welford::default();
    for (slot, data) in &inputs {
        for line in lines(slot, data, call.cancel) {
            let (number, text) = line?;
            let value = text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    ExecutionError::function(format!(
                        "input {slot:?} line {number}: {} is not a finite number",
                        quote(text)
                    ))
                })?;
            stats.add(value);
        }
    }
    if stats.count == 0 {
        return Err(ExecutionError::function(format!(
            "multiparty_statistics found no values in its {} inputs: mean and variance are undefined",
            inputs.len()
        )));
    }
    let variance = stats.variance();
    if !stats.mean.is_finite() || !variance.is_finite() {
        return Err(ExecutionError::function(
            "the values are too large: the mean or variance overflows f64",
        ));
    }
    // Adding 0.0 turns a mean of -0.0 into 0.0, so it never prints as "-0.000".
    let line = format!(
        "{},{:.decimals$},{:.decimals$}",
        stats.count,
        stats.mean + 0.0,
        variance + 0.0
    );
    call.write_every_output(format!("{line}\n").as_bytes())?;
    Ok(line.into_bytes())
}

/// The `decimals` argument, or [`DEFAULT_DECIMALS`] when absent.
fn decimals(given: Option<&str>) -> Result<usize, ExecutionError> {
    let Some(text) = given else {
        return Ok(DEFAULT_DECIMALS);
    };
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|d| *d <= MAX_DECIMALS)
        .ok_or_else(|| {
            ExecutionError::function(format!(
                "argument \"decimals\" is {}: expected an integer from 0 to {MAX_DECIMALS}",
                quote(text)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::test_support::{every, function_message, run};

    const NAME: &str = "multiparty_statistics";
    const OUTS: [&str; 2] = ["o1", "o2"];

    #[tokio::test]
    async fn combines_every_party() {
        let (outcome, outputs) = run(
            NAME,
            &[],
            &[("p1", b"1\n2.0\n"), ("p2", b" 3e0 \r\n\n4\n")],
            &OUTS,
        )
        .await
        .unwrap();
        assert_eq!(outcome.return_value, b"4,2.500000,1.250000");
        assert_eq!(outputs, every(&OUTS, b"4,2.500000,1.250000\n"));
    }

    #[tokio::test]
    async fn one_party_and_decimals_argument() {
        let (outcome, outputs) = run(
            NAME,
            &[("decimals", "2")],
            &[("only", b"-1\n-2\n-4\n")],
            &["o"],
        )
        .await
        .unwrap();
        // mean -7/3, variance 14/9.
        assert_eq!(outcome.return_value, b"3,-2.33,1.56");
        assert_eq!(outputs, every(&["o"], b"3,-2.33,1.56\n"));
        let (outcome, _) = run(NAME, &[("decimals", "0")], &[("p", b"-0.0\n")], &[])
            .await
            .unwrap();
        assert_eq!(outcome.return_value, b"1,0,0");
    }

    #[tokio::test]
    async fn welford_is_accurate_for_large_offsets() {
        // Naive sum-of-squares loses all digits here; Welford keeps the exact answer.
        let data = b"1000000004\n1000000007\n1000000013\n1000000016\n";
        let (outcome, _) = run(NAME, &[], &[("p", data)], &[]).await.unwrap();
        assert_eq!(outcome.return_value, b"4,1000000010.000000,22.500000");
    }

    #[tokio::test]
    async fn rejects_non_finite_and_bad_numbers() {
        for (bad, shown) in [
            (&b"NaN"[..], "\"NaN\""),
            (b"inf", "\"inf\""),
            (b"-infinity", "\"-infinity\""),
            (b"1e999", "\"1e999\""),
            (b"1,5", "\"1,5\""),
        ] {
            let mut input = b"1\n".to_vec();
            input.extend_from_slice(bad);
            let message = function_message(run(NAME, &[], &[("p", &input)], &[]).await);
            assert_eq!(
                message,
                format!("input \"p\" line 2: {shown} is not a finite number")
            );
        }
    }

    #[tokio::test]
    async fn overflowing_results_are_an_error() {
        let message = function_message(
            run(NAME, &[], &[("a", b"1.7e308\n"), ("b", b"-1.7e308\n")], &[]).await,
        );
        assert_eq!(
            message,
            "the values are too large: the mean or variance overflows f64"
        );
    }

    #[tokio::test]
    async fn no_inputs_or_no_values_are_errors() {
        let message = function_message(run(NAME, &[], &[], &["o"]).await);
        assert_eq!(
            message,
            "multiparty_statistics needs at least 1 input slot, got 0"
        );
        let message = function_message(run(NAME, &[], &[("a", b"\n"), ("b", b"")], &[]).await);
        assert_eq!(
            message,
            "multiparty_statistics found no values in its 2 inputs: mean and variance are undefined"
        );
    }

    #[tokio::test]
    async fn bad_utf8_names_slot_and_line() {
        let message =
            function_message(run(NAME, &[], &[("a", b"1\n"), ("b", b"2\n\xfe")], &[]).await);
        assert_eq!(
            message,
            "input \"b\" line 2: not valid UTF-8 (at byte 1 of the line)"
        );
    }

    #[test]
    fn decimals_argument_is_checked() {
        assert_eq!(decimals(None).unwrap(), DEFAULT_DECIMALS);
        assert_eq!(decimals(Some("17")).unwrap(), 17);
        for bad in ["18", "-1", "two", ""] {
            let message = function_message(decimals(Some(bad)));
            assert_eq!(
                message,
                format!("argument \"decimals\" is {bad:?}: expected an integer from 0 to 17")
            );
        }
    }
}
