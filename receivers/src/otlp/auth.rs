//! Bearer-token authentication shared by both transports: the request must
//! carry `Authorization: Bearer <token>` (gRPC: the `authorization`
//! metadata key), compared in constant time.
//!
//! Pure header checking; it must not depend on the servers.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use magpie_core::config::Secret;
use subtle::ConstantTimeEq;

/// The configured token.
#[derive(Clone)]
pub struct BearerAuth {
    token: Secret<String>,
}

impl BearerAuth {
    pub fn new(token: Secret<String>) -> Self {
        BearerAuth { token }
    }

    /// Whether `headers` carry the token. The scheme is matched without
    /// regard to case (RFC 9110 §11.1); the token exactly.
    pub fn check(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let Some((scheme, token)) = value.split_at_checked(7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let token = token.trim_ascii();
        bool::from(token.ct_eq(self.token.expose().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(header: Option<&str>) -> bool {
        let auth = BearerAuth::new(Secret::new("s3cret".to_string()));
        let mut h = HeaderMap::new();
        if let Some(v) = header {
            h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        auth.check(&h)
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        assert!(check(Some("Bearer s3cret")));
        assert!(check(Some("bearer s3cret")));
        assert!(!check(Some("Bearer s3cre")));
        assert!(!check(Some("Bearer s3cret2")));
        assert!(!check(Some("Basic s3cret")));
        assert!(!check(Some("Bearer")));
        assert!(!check(Some("s3cret")));
        assert!(!check(None));
    }
}
