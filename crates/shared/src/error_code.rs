//! The one table of error codes (model: meilisearch's `make_error_codes!`).
//!
//! Every error a client can meet has one [`ErrorCode`]: the stable snake_case `code` of the REST
//! body, its HTTP status, the gRPC status code it travels with between services, the GraphQL
//! `extensions.code` the gateway answers with, and an anchor in `docs/errors.md`. Everything that
//! renders or reads an error goes through this table with exhaustive matches, so a new code is
//! one row here and the compiler names every place that must decide about it. `docs/errors.md`
//! is generated from the table (`UPDATE_DOCS=1 cargo test -p ecom-shared error_code`), and a test
//! fails when the two differ.

use axum::http::StatusCode;

/// The GraphQL `extensions.code` values of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GraphqlCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    InsufficientStock,
    PaymentDeclined,
    Conflict,
    RateLimited,
    ServiceUnavailable,
    Internal,
}

impl GraphqlCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::InsufficientStock => "INSUFFICIENT_STOCK",
            Self::PaymentDeclined => "PAYMENT_DECLINED",
            Self::Conflict => "CONFLICT",
            Self::RateLimited => "RATE_LIMITED",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::Internal => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl std::fmt::Display for GraphqlCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! error_codes {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $code:literal: $http:ident, $grpc:ident, $graphql:ident;
    )+) => {
        /// A stable error code: see the module documentation and `docs/errors.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the table's order (the order of `docs/errors.md`).
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant),+];

            /// The snake_case `code` of a REST error body and of the `ecom-error-code` gRPC
            /// metadata.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)+
                }
            }

            /// The HTTP status an error with this code is answered with.
            pub const fn http_status(self) -> StatusCode {
                match self {
                    $(Self::$variant => StatusCode::$http,)+
                }
            }

            /// The gRPC status code an error with this code travels with between services.
            pub const fn grpc_code(self) -> tonic::Code {
                match self {
                    $(Self::$variant => tonic::Code::$grpc,)+
                }
            }

            /// The GraphQL `extensions.code` the gateway answers with.
            pub const fn graphql_code(self) -> GraphqlCode {
                match self {
                    $(Self::$variant => GraphqlCode::$graphql,)+
                }
            }

            /// What the code means and what a client should do (the table's doc comment).
            pub const fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!($($doc, "\n"),+),)+
                }
            }
        }
    };
}

error_codes! {
    /// A request field (or the body, a path or a query parameter) is invalid; `errors` names
    /// each field and what is wrong with it, all at once. A body that is not JSON, or not of the
    /// documented content type, is the same code with `400 Bad Request`. Fix the request; do not
    /// retry it unchanged.
    ValidationError = "validation_error": UNPROCESSABLE_ENTITY, InvalidArgument, BadUserInput;
    /// The body is over the size limit (256 KiB on every service).
    PayloadTooLarge = "payload_too_large": PAYLOAD_TOO_LARGE, InvalidArgument, BadUserInput;
    /// The card was refused before any charge (number, expiry or CVC); `errors` names the
    /// fields. Nothing was stored.
    InvalidCard = "invalid_card": UNPROCESSABLE_ENTITY, InvalidArgument, BadUserInput;
    /// The e-mail and password do not match an active account. Deliberately the same answer for
    /// an unknown e-mail and a wrong password.
    InvalidCredentials = "invalid_credentials": UNAUTHORIZED, Unauthenticated, Unauthenticated;
    /// No bearer token, or a malformed, forged or revoked one (also a refresh token that is
    /// unknown, used or revoked). Sign in again.
    InvalidToken = "invalid_token": UNAUTHORIZED, Unauthenticated, Unauthenticated;
    /// The access token has expired: renew it with the refresh token.
    TokenExpired = "token_expired": UNAUTHORIZED, Unauthenticated, Unauthenticated;
    /// Authenticated, but not allowed to do this (a role the operation needs).
    Forbidden = "forbidden": FORBIDDEN, PermissionDenied, Forbidden;
    /// No such resource, or not yours: the same answer, so ids cannot be probed.
    NotFound = "not_found": NOT_FOUND, NotFound, NotFound;
    /// The e-mail is already registered.
    EmailTaken = "email_taken": CONFLICT, AlreadyExists, Conflict;
    /// This `Idempotency-Key` was already used with a different request. Use a new key for a
    /// new request.
    IdempotencyConflict = "idempotency_conflict": CONFLICT, AlreadyExists, Conflict;
    /// A request with this `Idempotency-Key` is still being processed; retry the same request
    /// shortly to get its answer.
    IdempotencyKeyInUse = "idempotency_key_in_use": CONFLICT, FailedPrecondition, Conflict;
    /// The resource is not in a state that allows this (paying a cancelled order, cancelling a
    /// paid one, deactivating the last admin...). The detail says which.
    InvalidState = "invalid_state": CONFLICT, FailedPrecondition, Conflict;
    /// Not enough stock for at least one line; the detail names the products. Nothing was
    /// reserved.
    InsufficientStock = "insufficient_stock": CONFLICT, FailedPrecondition, InsufficientStock;
    /// A stock reservation expired or was released before it was committed; nothing was
    /// committed (between services: the payment is refunded).
    ReservationExpired = "reservation_expired": GONE, Aborted, Conflict;
    /// The order was cancelled (its reservation released) before this step; nothing was done.
    OrderCancelled = "order_cancelled": GONE, Aborted, Conflict;
    /// The card was declined. A declined charge is not an error response: it is a `Payment`
    /// with `status: failed` and this `failure_code`; the code is listed for clients that map
    /// failure codes, and the gateway's GraphQL code for it is `PAYMENT_DECLINED`.
    CardDeclined = "card_declined": PAYMENT_REQUIRED, FailedPrecondition, PaymentDeclined;
    /// The card has insufficient funds: like `card_declined`, a failed `Payment`'s
    /// `failure_code`, not an error response.
    InsufficientFunds = "insufficient_funds": PAYMENT_REQUIRED, FailedPrecondition, PaymentDeclined;
    /// Over a rate limit; wait `Retry-After` seconds (GraphQL: `extensions.retryAfter`).
    RateLimited = "rate_limited": TOO_MANY_REQUESTS, ResourceExhausted, RateLimited;
    /// A dependency (a database, Redis, another service, the password-hashing pool) is down or
    /// saturated; retry after `Retry-After` seconds. Nothing was changed, or the request is
    /// safe to retry with its `Idempotency-Key`.
    ServiceUnavailable = "service_unavailable": SERVICE_UNAVAILABLE, Unavailable, ServiceUnavailable;
    /// An unexpected failure on our side. The cause is logged with the request id, never sent.
    InternalError = "internal_error": INTERNAL_SERVER_ERROR, Internal, Internal;
}

impl ErrorCode {
    /// The code named by `code` (a REST body's `code`, gRPC metadata); `None` for a code this
    /// build does not know (a newer peer's).
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// The anchor of the code's entry in `docs/errors.md` (`docs/errors.md#<anchor>`).
    pub const fn doc_anchor(self) -> &'static str {
        self.as_str()
    }

    /// A gRPC status without our code in its metadata (a transport failure, a foreign server):
    /// the closest code by meaning, or `None` when it says nothing a client can act on.
    pub fn from_grpc(code: tonic::Code) -> Option<Self> {
        use tonic::Code;
        Some(match code {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                Self::ServiceUnavailable
            }
            Code::Unauthenticated => Self::InvalidToken,
            Code::PermissionDenied => Self::Forbidden,
            Code::NotFound => Self::NotFound,
            Code::InvalidArgument | Code::OutOfRange => Self::ValidationError,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => Self::InvalidState,
            Code::ResourceExhausted => Self::RateLimited,
            Code::Ok | Code::Unknown | Code::Unimplemented | Code::Internal | Code::DataLoss => {
                return None;
            }
        })
    }

    /// The stable code a service put on a gRPC status (`ecom-error-code` metadata), if any.
    pub fn of_status(status: &tonic::Status) -> Option<Self> {
        status
            .metadata()
            .get(crate::error::GRPC_CODE_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
    }

    /// `docs/errors.md`, generated from the table.
    pub fn markdown() -> String {
        let mut out = String::from(
            "# Error codes\n\n\
             <!-- Generated from crates/shared/src/error_code.rs: edit the table there, then run\n\
             `UPDATE_DOCS=1 cargo test -p ecom-shared error_code`. A test fails when this file\n\
             and the table differ. -->\n\n\
             Every error carries one stable `code`. Over REST it is the body's `code`\n\
             (`{\"detail\", \"code\", \"errors\"?}`, `errors` listing each invalid field); between\n\
             services it travels as the gRPC status code below with the same `code` in the\n\
             `ecom-error-code` metadata and field errors as `google.rpc.BadRequest` details; the\n\
             gateway answers GraphQL errors with `extensions.code` (and the snake_case code as\n\
             `extensions.reason`, field errors as `extensions.errors`). Branch on `code`, never on\n\
             `detail`: the text may change, the codes do not.\n\n\
             | code | HTTP | gRPC | GraphQL `extensions.code` |\n\
             |---|---|---|---|\n",
        );
        for code in Self::ALL {
            let status = code.http_status();
            out.push_str(&format!(
                "| [`{c}`](#{a}) | {s} {r} | `{g:?}` | `{q}` |\n",
                c = code.as_str(),
                a = code.doc_anchor(),
                s = status.as_u16(),
                r = status.canonical_reason().unwrap_or(""),
                g = code.grpc_code(),
                q = code.graphql_code().as_str(),
            ));
        }
        for code in Self::ALL {
            out.push_str(&format!(
                "\n<a id=\"{a}\"></a>\n### `{c}`\n\n",
                a = code.doc_anchor(),
                c = code.as_str()
            ));
            let text: Vec<&str> = code.description().lines().map(str::trim).collect();
            out.push_str(&text.join(" "));
            out.push('\n');
        }
        out
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_docs_match_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");
        let generated = ErrorCode::markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, &generated).expect("write docs/errors.md");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/errors.md differs from the error-code table: run \
             `UPDATE_DOCS=1 cargo test -p ecom-shared error_code` and commit the file"
        );
    }

    #[test]
    fn error_code_strings_are_unique_snake_case_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert_eq!(ErrorCode::parse(s), Some(code));
            assert!(
                !code.description().trim().is_empty(),
                "{s} has no description"
            );
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn error_code_every_contract_code_is_in_the_table() {
        // CONTRACT.md's "Codes used by clients" and its GraphQL codes.
        for code in [
            "validation_error",
            "invalid_credentials",
            "email_taken",
            "token_expired",
            "invalid_token",
            "forbidden",
            "not_found",
            "insufficient_stock",
            "card_declined",
            "insufficient_funds",
            "invalid_card",
            "idempotency_conflict",
            "invalid_state",
            "rate_limited",
            "service_unavailable",
        ] {
            assert!(ErrorCode::parse(code).is_some(), "{code}");
        }
        let graphql: std::collections::HashSet<&str> = ErrorCode::ALL
            .iter()
            .map(|c| c.graphql_code().as_str())
            .collect();
        for code in [
            "UNAUTHENTICATED",
            "FORBIDDEN",
            "NOT_FOUND",
            "BAD_USER_INPUT",
            "INSUFFICIENT_STOCK",
            "PAYMENT_DECLINED",
            "CONFLICT",
            "RATE_LIMITED",
            "SERVICE_UNAVAILABLE",
        ] {
            assert!(graphql.contains(code), "{code}");
        }
    }

    #[test]
    fn error_code_statuses_agree_in_kind_across_transports() {
        use tonic::Code;
        for &code in ErrorCode::ALL {
            let http = code.http_status().as_u16();
            let grpc = code.grpc_code();
            let ok = match http {
                400 | 413 | 422 => grpc == Code::InvalidArgument,
                401 => grpc == Code::Unauthenticated,
                402 | 409 => matches!(grpc, Code::AlreadyExists | Code::FailedPrecondition),
                403 => grpc == Code::PermissionDenied,
                404 => grpc == Code::NotFound,
                410 => grpc == Code::Aborted,
                429 => grpc == Code::ResourceExhausted,
                503 => grpc == Code::Unavailable,
                500 => grpc == Code::Internal,
                _ => false,
            };
            assert!(ok, "{code}: HTTP {http} with gRPC {grpc:?}");
        }
    }
}
