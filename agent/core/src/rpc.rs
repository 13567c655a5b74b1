//! The few `google.rpc` messages OTLP uses for errors: `Status` (the body of
//! an OTLP/HTTP error and the details of a gRPC status) and `RetryInfo` (how
//! long a client should wait before retrying). Hand-written prost messages,
//! so no protoc and no extra crate.

use std::time::Duration;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The `Any.type_url` of `RetryInfo`.
pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// A `RetryInfo` detail asking the client to wait `delay`.
pub fn retry_info(delay: Duration) -> Any {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    Any { type_url: RETRY_INFO_TYPE.to_string(), value: prost::Message::encode_to_vec(&info) }
}

/// The retry delay in a status's `RetryInfo` detail, if there is one.
pub fn retry_delay(status: &Status) -> Option<Duration> {
    status.details.iter().filter(|d| d.type_url == RETRY_INFO_TYPE).find_map(|d| {
        let info: RetryInfo = prost::Message::decode(d.value.as_slice()).ok()?;
        let delay = info.retry_delay?;
        let secs = u64::try_from(delay.seconds).ok()?;
        let nanos = u32::try_from(delay.nanos).ok()?;
        Some(Duration::new(secs, nanos))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn retry_info_round_trips_through_a_status() {
        let status = Status {
            code: 14,
            message: "busy".into(),
            details: vec![retry_info(Duration::from_millis(1500))],
        };
        let decoded = Status::decode(status.encode_to_vec().as_slice()).unwrap();
        assert_eq!(retry_delay(&decoded), Some(Duration::from_millis(1500)));
        assert_eq!(retry_delay(&Status::default()), None);
    }
}
