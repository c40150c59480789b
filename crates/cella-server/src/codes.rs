//! The status codes of requests refused before any service saw them.
//!
//! tonic answers a request whose bytes are not a valid protobuf message with INTERNAL,
//! and one over the size limit with OUT_OF_RANGE. Both are the caller's fault, and
//! INTERNAL tells a client to retry or report a node bug, so the node answers
//! INVALID_ARGUMENT and RESOURCE_EXHAUSTED instead, as gRPC's status code guide does for
//! a malformed request and for a message larger than the receiver accepts. The message
//! is tonic's, unchanged. See docs/api.md, "Errors".
//!
//! tonic attaches the [`Status`] of an error it answers itself to the response's
//! extensions; this layer looks only at those, so statuses from the services pass
//! through untouched.

use tonic::codegen::http;
use tonic::{Code, Status};

/// Start of tonic-prost's message for bytes that do not decode as the request type.
const DECODE_ERROR: &str = "failed to decode Protobuf message";
/// Part of tonic's message for a message over the decoding limit.
const TOO_LARGE: &str = "message length too large";

/// The code the node answers instead of `status`'s, if it is one of tonic's own
/// refusals of a request.
fn refined(status: &Status) -> Option<Code> {
    match status.code() {
        Code::Internal if status.message().starts_with(DECODE_ERROR) => Some(Code::InvalidArgument),
        Code::OutOfRange if status.message().contains(TOO_LARGE) => Some(Code::ResourceExhausted),
        _ => None,
    }
}

/// Rewrites the status of a response that tonic made for a malformed or oversized
/// request (see the module doc); every other response is returned as it is.
pub(crate) fn refine_status<B>(mut response: http::Response<B>) -> http::Response<B> {
    let Some(status) = response.extensions().get::<Status>() else {
        return response;
    };
    let Some(code) = refined(status) else {
        return response;
    };
    let status = Status::new(code, status.message().to_owned());
    if let Err(e) = status.add_header(response.headers_mut()) {
        tracing::warn!(error = %e, "cannot rewrite the status of a refused request");
        return response;
    }
    response.extensions_mut().insert(status);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: Status) -> Status {
        let response = refine_status(status.into_http::<()>());
        let from_headers = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(
            response.extensions().get::<Status>().map(Status::code),
            Some(from_headers.code())
        );
        from_headers
    }

    #[test]
    fn tonics_refusals_get_the_callers_codes_and_keep_their_message() {
        let s = answered(Status::internal(
            "failed to decode Protobuf message: buffer underflow",
        ));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("buffer underflow"), "{}", s.message());
        let s = answered(Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        ));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.message().contains("5000000"), "{}", s.message());
    }

    #[test]
    fn other_statuses_pass_through() {
        for status in [
            Status::internal("the store failed"),
            Status::out_of_range("page 7 is past the end"),
            Status::invalid_argument("failed to decode Protobuf message"),
            Status::not_found("task-x"),
        ] {
            let code = status.code();
            assert_eq!(answered(status).code(), code);
        }
        let plain = refine_status(http::Response::new(()));
        assert!(plain.headers().get("grpc-status").is_none());
    }
}
