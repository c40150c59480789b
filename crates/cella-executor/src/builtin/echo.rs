//! `echo`: returns its `message` argument. The smallest builtin, for smoke tests.

use super::Call;
use crate::error::ExecutionError;

/// The argument echoed.
const MESSAGE: &str = "message";

/// Returns the bytes of argument `message`; reads no input and writes no output.
pub(super) fn echo(call: &mut Call<'_>) -> Result<Vec<u8>, ExecutionError> {
    call.argument(MESSAGE)
        .map(|m| m.as_bytes().to_vec())
        .ok_or_else(|| ExecutionError::function("echo needs the argument \"message\""))
}

#[cfg(test)]
mod tests {
    use crate::builtin::test_support::{every, function_message, run};

    #[tokio::test]
    async fn returns_the_message_and_writes_nothing() {
        let (outcome, outputs) = run(
            "echo",
            &[("message", "héllo, world")],
            &[("ignored", b"x")],
            &["out"],
        )
        .await
        .unwrap();
        assert_eq!(outcome.return_value, "héllo, world".as_bytes());
        assert_eq!(outputs, every(&["out"], b""));
        assert_eq!(outcome.usage.output_bytes, 0);
        assert_eq!(outcome.usage.input_bytes, 1);
        assert!(outcome.log.is_empty());
    }

    #[tokio::test]
    async fn empty_message_is_fine() {
        let (outcome, _) = run("echo", &[("message", "")], &[], &[]).await.unwrap();
        assert_eq!(outcome.return_value, b"");
    }

    #[tokio::test]
    async fn missing_message_is_a_function_error() {
        let message = function_message(run("echo", &[], &[], &[]).await);
        assert_eq!(message, "echo needs the argument \"message\"");
    }
}
