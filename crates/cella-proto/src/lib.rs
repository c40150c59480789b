//! Generated gRPC messages, clients and servers for Cella's public API, compiled from
//! `proto/cella/v1/*.proto` (the single source of truth for clients).
#![forbid(unsafe_code)]

/// Version 1 of the API (`package cella.v1`).
#[allow(missing_docs, unreachable_pub, reason = "generated code")]
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::allow_attributes_without_reason,
    reason = "generated code"
)]
pub mod v1 {
    tonic::include_proto!("cella.v1");
}

/// gRPC's name of `code`, as in the specification and on the wire in other languages
/// (`OK`, `NOT_FOUND`, …): the node's metrics label requests with it, and the Python
/// SDK's exceptions carry it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    /// Every code, 0 to 16, is named as its variant in SCREAMING_SNAKE_CASE.
    #[test]
    fn every_code_has_its_specification_name() {
        for n in 0..=16 {
            let code = tonic::Code::from_i32(n);
            let mut want = String::new();
            for (i, c) in format!("{code:?}").chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    want.push('_');
                }
                want.push(c.to_ascii_uppercase());
            }
            assert_eq!(super::code_name(code), want, "code {n}");
        }
    }
}
