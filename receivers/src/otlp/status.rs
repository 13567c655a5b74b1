//! What a failed request is told: a `google.rpc.Status` with at most one
//! detail, `RetryInfo` for throttling or `BadRequest` for bad data, encoded
//! for either transport. The `Status` and `RetryInfo` messages are core's
//! ([`magpie_core::rpc`]); `BadRequest` is defined here, the only component
//! that sends it.
//!
//! OTLP/HTTP answers every 4xx and 5xx with a `Status` body, encoded as the
//! request was (protobuf or JSON); OTLP/gRPC sends the same message in the
//! `grpc-status-details-bin` trailer. This module only encodes; it must not
//! depend on the HTTP or gRPC server code.

use magpie_core::rpc::{self, RETRY_INFO_TYPE};
use prost::Message;
use std::time::Duration;

/// `google.rpc.BadRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct BadRequest {
    #[prost(message, repeated, tag = "1")]
    pub field_violations: Vec<FieldViolation>,
}

/// `google.rpc.BadRequest.FieldViolation`.
#[derive(Clone, PartialEq, Message)]
pub struct FieldViolation {
    #[prost(string, tag = "1")]
    pub field: String,
    #[prost(string, tag = "2")]
    pub description: String,
}

pub const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

/// One detail attached to a status.
#[derive(Clone, Debug, PartialEq)]
pub enum Detail {
    /// The client may retry after this delay.
    RetryAfter(Duration),
    /// The request body could not be decoded; the description says why.
    BadRequest(String),
}

/// A failure to report, before it is encoded for one transport.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The gRPC code (`tonic::Code as i32`).
    pub code: i32,
    pub message: String,
    pub detail: Option<Detail>,
}

impl Failure {
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Failure { code: code as i32, message: message.into(), detail: None }
    }

    pub fn with_detail(mut self, detail: Detail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The `google.rpc.Status` message.
    pub fn to_proto(&self) -> rpc::Status {
        let details = match &self.detail {
            None => Vec::new(),
            Some(Detail::RetryAfter(d)) => vec![rpc::retry_info(*d)],
            Some(Detail::BadRequest(description)) => vec![rpc::Any {
                type_url: BAD_REQUEST_TYPE.to_string(),
                value: BadRequest {
                    field_violations: vec![FieldViolation {
                        field: String::new(),
                        description: description.clone(),
                    }],
                }
                .encode_to_vec(),
            }],
        };
        rpc::Status { code: self.code, message: self.message.clone(), details }
    }

    /// The status as protobuf bytes.
    pub fn encode_proto(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The status in the proto3 JSON mapping (`Any` details carry `@type`,
    /// durations are strings such as `"1s"`).
    pub fn encode_json(&self) -> Vec<u8> {
        let details: Vec<serde_json::Value> = match &self.detail {
            None => Vec::new(),
            Some(Detail::RetryAfter(d)) => vec![serde_json::json!({
                "@type": RETRY_INFO_TYPE,
                "retryDelay": json_duration(*d),
            })],
            Some(Detail::BadRequest(description)) => vec![serde_json::json!({
                "@type": BAD_REQUEST_TYPE,
                "fieldViolations": [{ "field": "", "description": description }],
            })],
        };
        let status = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "details": details,
        });
        status.to_string().into_bytes()
    }

    /// The status as a tonic status, details included.
    pub fn to_tonic(&self) -> tonic::Status {
        let code = tonic::Code::from_i32(self.code);
        if self.detail.is_none() {
            return tonic::Status::new(code, self.message.clone());
        }
        tonic::Status::with_details(code, self.message.clone(), self.encode_proto().into())
    }
}

fn json_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_round_trips_through_protobuf() {
        let f = Failure::new(tonic::Code::Unavailable, "pipeline is full")
            .with_detail(Detail::RetryAfter(Duration::from_secs(1)));
        let status = rpc::Status::decode(f.encode_proto().as_slice()).unwrap();
        assert_eq!(status.code, 14);
        assert_eq!(status.message, "pipeline is full");
        assert_eq!(status.details.len(), 1);
        assert_eq!(status.details[0].type_url, RETRY_INFO_TYPE);
        assert_eq!(rpc::retry_delay(&status), Some(Duration::from_secs(1)));
    }

    #[test]
    fn json_uses_the_proto3_mapping() {
        let f =
            Failure::new(tonic::Code::InvalidArgument, "bad").with_detail(Detail::BadRequest("eof".into()));
        let v: serde_json::Value = serde_json::from_slice(&f.encode_json()).unwrap();
        assert_eq!(v["code"], 3);
        assert_eq!(v["message"], "bad");
        assert_eq!(v["details"][0]["@type"], BAD_REQUEST_TYPE);
        assert_eq!(v["details"][0]["fieldViolations"][0]["description"], "eof");
        assert_eq!(json_duration(Duration::from_millis(1500)), "1.500000000s");
        assert_eq!(json_duration(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn tonic_status_carries_the_encoded_details() {
        let f = Failure::new(tonic::Code::Unavailable, "full")
            .with_detail(Detail::RetryAfter(Duration::from_secs(3)));
        let s = f.to_tonic();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let status = rpc::Status::decode(s.details()).unwrap();
        assert_eq!(status.details[0].type_url, RETRY_INFO_TYPE);
        assert!(Failure::new(tonic::Code::Unauthenticated, "no").to_tonic().details().is_empty());
    }
}
