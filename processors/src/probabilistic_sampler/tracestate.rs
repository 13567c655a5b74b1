//! The W3C `tracestate` of a span, with OpenTelemetry's `ot` entry parsed
//! into its sampling fields (`th`, `rv`) and everything else kept verbatim.
//!
//! Parsing follows the W3C Trace Context grammar and the OpenTelemetry
//! specification "TraceState Handling" as the Collector's `pkg/sampling`
//! applies them; serializing puts the `ot` entry first (a vendor that
//! changes its entry moves it to the front) with `rv` before `th` before
//! any other `ot` sub-keys, and leaves other vendors' entries as they were.

use super::consistent::{Randomness, Threshold, ValueError};
use crate::tracestate::{MAX_MEMBERS, valid_key, valid_value};

/// Longest `tracestate` accepted, in bytes.
pub const MAX_LENGTH: usize = 1024;
/// Longest `ot` value accepted, in bytes.
pub const MAX_OT_LENGTH: usize = 256;

/// Why a `tracestate` could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceStateError {
    #[error("tracestate is longer than 1024 bytes or has more than 32 members")]
    Size,
    #[error("tracestate is not a valid W3C list")]
    Syntax,
    #[error("the ot entry of tracestate is not a valid list of key:value")]
    OtSyntax,
    #[error("tracestate ot.rv: {0}")]
    RValue(ValueError),
    #[error("tracestate ot.th: {0}")]
    TValue(ValueError),
}

/// A parsed `tracestate`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceState {
    /// `rv`, as sent (case kept) and as a number.
    pub rv: Option<(String, Randomness)>,
    /// `th`, as a threshold (re-encoded when written).
    pub th: Option<Threshold>,
    /// Other `ot` sub-keys, in order.
    ot_other: Vec<(String, String)>,
    /// Every other vendor's member, verbatim and in order.
    others: Vec<String>,
}

impl TraceState {
    pub fn parse(input: &str) -> Result<TraceState, TraceStateError> {
        let mut ts = TraceState::default();
        if input.is_empty() {
            return Ok(ts);
        }
        if input.len() > MAX_LENGTH {
            return Err(TraceStateError::Size);
        }
        let mut members = 0;
        for member in input.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            members += 1;
            if members > MAX_MEMBERS {
                return Err(TraceStateError::Size);
            }
            let (key, value) = member.split_once('=').ok_or(TraceStateError::Syntax)?;
            if !valid_key(key) || !valid_value(value) {
                return Err(TraceStateError::Syntax);
            }
            if key == "ot" {
                ts.parse_ot(value)?;
            } else {
                ts.others.push(member.to_string());
            }
        }
        Ok(ts)
    }

    fn parse_ot(&mut self, value: &str) -> Result<(), TraceStateError> {
        if value.len() > MAX_OT_LENGTH {
            return Err(TraceStateError::Size);
        }
        for part in value.split(';') {
            let (k, v) = part.split_once(':').ok_or(TraceStateError::OtSyntax)?;
            let key_ok = k.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            let value_ok = v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !key_ok || !value_ok {
                return Err(TraceStateError::OtSyntax);
            }
            match k {
                "rv" => {
                    let r = Randomness::from_rvalue(v).map_err(TraceStateError::RValue)?;
                    self.rv = Some((v.to_string(), r));
                }
                "th" => self.th = Some(Threshold::from_tvalue(v).map_err(TraceStateError::TValue)?),
                _ => self.ot_other.push((k.to_string(), v.to_string())),
            }
        }
        Ok(())
    }

    /// The randomness `rv` gives, if any.
    pub fn randomness(&self) -> Option<Randomness> {
        self.rv.as_ref().map(|(_, r)| *r)
    }

    pub fn set_randomness(&mut self, r: Randomness) {
        self.rv = Some((r.rvalue(), r));
    }

    /// The W3C encoding.
    pub fn serialize(&self) -> String {
        let mut ot: Vec<String> = Vec::new();
        if let Some((raw, _)) = &self.rv {
            ot.push(format!("rv:{raw}"));
        }
        if let Some(th) = self.th {
            let t = th.tvalue();
            if !t.is_empty() {
                ot.push(format!("th:{t}"));
            }
        }
        ot.extend(self.ot_other.iter().map(|(k, v)| format!("{k}:{v}")));
        let mut out = Vec::with_capacity(1 + self.others.len());
        if !ot.is_empty() {
            out.push(format!("ot={}", ot.join(";")));
        }
        out.extend(self.others.iter().cloned());
        out.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(input: &str) -> String {
        TraceState::parse(input).unwrap_or_else(|e| panic!("{input}: {e}")).serialize()
    }

    #[test]
    fn awkward_tracestates_parse_or_fail_cleanly_and_round_trip() {
        for s in magpie_core::otlp::testdata::awkward_strings() {
            for input in
                [s.clone(), format!("ot={s}"), format!("congo=x,ot=th:{s}"), format!("ot=rv:{s};th:8")]
            {
                if let Ok(ts) = TraceState::parse(&input) {
                    let again = TraceState::parse(&ts.serialize());
                    assert!(again.is_ok(), "{input:?} serialized as {:?} does not parse", ts.serialize());
                }
            }
        }
    }

    #[test]
    fn parses_and_writes_back() {
        for (input, output) in [
            ("", ""),
            ("ot=th:c", "ot=th:c"),
            // th is re-encoded without trailing zeros; rv keeps its case.
            ("ot=rv:90000000000000;th:80000000000000", "ot=rv:90000000000000;th:8"),
            ("ot=th:8;rv:FD70A3D70A3D71", "ot=rv:FD70A3D70A3D71;th:8"),
            // Other vendors are kept verbatim and in order, after ot.
            (
                "congo=t61rcWkgMzE,ot=th:c;xy:1,rojo=00f067aa0ba902b7",
                "ot=th:c;xy:1,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
            ),
            (" a=1 ,, b@c=2\t", "a=1,b@c=2"),
        ] {
            assert_eq!(round_trip(input), output, "{input}");
        }
    }

    #[test]
    fn reads_the_sampling_fields() {
        let ts = TraceState::parse("vendor=x,ot=rv:c0000000000000;th:8").unwrap_or_default();
        assert_eq!(ts.randomness().map(Randomness::unsigned), Some(0xc0 << 48));
        assert_eq!(ts.th.map(Threshold::tvalue).as_deref(), Some("8"));
    }

    #[test]
    fn refuses_what_the_collector_refuses() {
        for (input, err) in [
            ("ot=rv:abababababababab", TraceStateError::RValue(ValueError::RValueSize)),
            ("ot=th:abababababababab", TraceStateError::TValue(ValueError::TValueSize)),
            ("ot=th:-1", TraceStateError::TValue(ValueError::Syntax)),
            ("ot=th", TraceStateError::OtSyntax),
            ("ot=th:c;Rv:1", TraceStateError::OtSyntax),
            ("ot=th:c;", TraceStateError::OtSyntax),
            ("Upper=1", TraceStateError::Syntax),
            ("a=", TraceStateError::Syntax),
            ("a=b=c", TraceStateError::Syntax),
            ("novalue", TraceStateError::Syntax),
        ] {
            assert_eq!(TraceState::parse(input), Err(err), "{input}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(TraceState::parse(&many.join(",")), Err(TraceStateError::Size));
        assert!(TraceState::parse(&many[..32].join(",")).is_ok());
        assert_eq!(TraceState::parse(&format!("a={}", "x".repeat(1100))), Err(TraceStateError::Size));
    }
}
