//! The numbers of consistent probability sampling, as the OpenTelemetry
//! specification "TraceState: Probability Sampling" defines them: 56-bit
//! randomness and rejection thresholds, their hex encodings (`rv`, `th`),
//! and the Collector's FNV-1a hash that turns any bytes into randomness for
//! the `hash_seed` mode. Pure functions only.

/// 2^56: one more than the largest randomness value, and the threshold that
/// rejects everything.
pub const MAX_ADJUSTED_COUNT: u64 = 1 << 56;

/// Hex digits of a full-width threshold or randomness value.
pub const HEX_DIGITS: usize = 14;

/// The smallest probability a threshold can express.
pub const MIN_PROBABILITY: f64 = 1.0 / MAX_ADJUSTED_COUNT as f64;

/// A rejection threshold in `[0, 2^56]`: an item is kept when its
/// randomness is at least the threshold. `0` keeps everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Threshold(u64);

/// 56 bits of randomness, from the trace id, an `rv` value, or a hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Randomness(u64);

/// Why an `rv` or `th` value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("r-value must have 14 hex digits")]
    RValueSize,
    #[error("t-value must have 1 to 14 hex digits")]
    TValueSize,
    #[error("not a hex number")]
    Syntax,
}

impl Threshold {
    /// Keeps everything (`th:0`).
    pub const ALWAYS: Threshold = Threshold(0);
    /// Keeps nothing.
    pub const NEVER: Threshold = Threshold(MAX_ADJUSTED_COUNT);

    /// `None` above 2^56.
    pub fn from_unsigned(v: u64) -> Option<Threshold> {
        (v <= MAX_ADJUSTED_COUNT).then_some(Threshold(v))
    }

    pub fn unsigned(self) -> u64 {
        self.0
    }

    /// Parses a `th` value: 1–14 hex digits, trailing zeros implied.
    pub fn from_tvalue(s: &str) -> Result<Threshold, ValueError> {
        if s.is_empty() || s.len() > HEX_DIGITS {
            return Err(ValueError::TValueSize);
        }
        let v = parse_hex(s)?;
        Ok(Threshold(v << (4 * (HEX_DIGITS - s.len()))))
    }

    /// The `th` encoding: 14 hex digits without trailing zeros, `0` for
    /// always; empty for never (which has no encoding).
    pub fn tvalue(self) -> String {
        if self == Threshold::ALWAYS {
            return "0".to_string();
        }
        Randomness(self.0).rvalue().trim_end_matches('0').to_string()
    }

    /// Whether an item with randomness `r` is kept.
    pub fn should_sample(self, r: Randomness) -> bool {
        r.0 >= self.0
    }

    /// The probability of keeping an item, in `[0, 1]`.
    pub fn probability(self) -> f64 {
        (MAX_ADJUSTED_COUNT - self.0) as f64 / MAX_ADJUSTED_COUNT as f64
    }

    /// The threshold for `fraction` rounded to `precision` significant hex
    /// digits (0 means all 14). Digits are added near 0 and 1, where
    /// leading `0`s or `f`s carry no information: one per factor of 16.
    /// `None` outside `[2^-56, 1]`.
    pub fn from_probability(fraction: f64, precision: usize) -> Option<Threshold> {
        if !(MIN_PROBABILITY..=1.0).contains(&fraction) {
            return None;
        }
        if fraction == 1.0 {
            return Some(Threshold::ALWAYS);
        }
        let precision = if precision == 0 { HEX_DIGITS } else { precision };
        let lead = |x: f64| (-frexp_exponent(x)) as usize / 4;
        let precision = HEX_DIGITS.min((precision + lead(fraction)).max(precision + lead(1.0 - fraction)));
        let scaled = (fraction * MAX_ADJUSTED_COUNT as f64).round() as u64;
        let mut threshold = MAX_ADJUSTED_COUNT - scaled;
        let shift = 4 * (HEX_DIGITS - precision);
        if shift != 0 {
            threshold += 1 << (shift - 1);
            threshold >>= shift;
            threshold <<= shift;
        }
        Some(Threshold(threshold.min(MAX_ADJUSTED_COUNT)))
    }
}

impl Randomness {
    /// The randomness every threshold but "never" keeps.
    pub const ALL: Randomness = Randomness(MAX_ADJUSTED_COUNT - 1);

    /// `None` at or above 2^56.
    pub fn from_unsigned(v: u64) -> Option<Randomness> {
        (v < MAX_ADJUSTED_COUNT).then_some(Randomness(v))
    }

    pub fn unsigned(self) -> u64 {
        self.0
    }

    /// The least-significant 56 bits of a trace id (W3C Trace Context
    /// Level 2); `None` for an id that is not 16 bytes or is all zeros
    /// (invalid by W3C).
    pub fn from_trace_id(id: &[u8]) -> Option<Randomness> {
        let id: &[u8; 16] = id.try_into().ok()?;
        if id.iter().all(|b| *b == 0) {
            return None;
        }
        let mut low = [0u8; 8];
        low[1..].copy_from_slice(&id[9..]);
        Some(Randomness(u64::from_be_bytes(low)))
    }

    /// Parses an `rv` value: exactly 14 hex digits.
    pub fn from_rvalue(s: &str) -> Result<Randomness, ValueError> {
        if s.len() != HEX_DIGITS {
            return Err(ValueError::RValueSize);
        }
        parse_hex(s).map(Randomness)
    }

    /// The `rv` encoding: 14 lowercase hex digits.
    pub fn rvalue(self) -> String {
        format!("{:014x}", self.0 & (MAX_ADJUSTED_COUNT - 1))
    }
}

fn parse_hex(s: &str) -> Result<u64, ValueError> {
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ValueError::Syntax);
    }
    u64::from_str_radix(s, 16).map_err(|_| ValueError::Syntax)
}

/// The exponent `e` with `x = m · 2^e`, `m` in `[0.5, 1)`, for a positive
/// normal `x` (C's and Go's `frexp`).
fn frexp_exponent(x: f64) -> i32 {
    ((x.to_bits() >> 52) & 0x7ff) as i32 - 1022
}

/// FNV-1a (32-bit) over the seed's four bytes, little-endian, then `bytes`:
/// the Collector's `computeHash`.
pub fn fnv1a_seeded(bytes: &[u8], seed: u32) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    seed.to_le_bytes().iter().chain(bytes).fold(OFFSET, |h, b| (h ^ u32::from(*b)).wrapping_mul(PRIME))
}

/// Bits of the hash the `hash_seed` mode decides on.
pub const HASH_BITS: u32 = 14;
const HASH_BUCKETS: u64 = 1 << HASH_BITS;

/// The randomness the `hash_seed` mode gives `bytes`, exactly as the
/// Collector builds it: its top 14 bits are `2^14 - 1 - (hash mod 2^14)`, so
/// "hash below the scaled rate" becomes "randomness at least the
/// threshold"; the lower 42 bits mix the hash's top 14 bits and repeat the
/// 14 used ones. Only the top 14 bits ever decide.
pub fn hash_randomness(bytes: &[u8], seed: u32) -> Randomness {
    let hashed32 = fnv1a_seeded(bytes, seed);
    let hashed = u64::from(hashed32) & (HASH_BUCKETS - 1);
    let rprime14 = HASH_BUCKETS - 1 - hashed;
    // The Collector calls these "unused18" and shifts by 32 - 14, which
    // leaves the hash's top 14 bits: reproduced as it is.
    let top14 = u64::from(hashed32 >> (32 - HASH_BITS));
    let mixed = top14 ^ (top14 << 10);
    Randomness(((rprime14 << 42) | (mixed << 14) | hashed) & (MAX_ADJUSTED_COUNT - 1))
}

/// The `hash_seed` mode's threshold for a percentage, computed as the
/// Collector does (in 32-bit floats, truncated): `None` when the rate
/// rounds to zero buckets.
pub fn hash_threshold(percent: f32) -> Option<Threshold> {
    let percent = percent.min(100.0);
    let scaled = (percent * (HASH_BUCKETS as f32 / 100.0)) as u64;
    if scaled == 0 {
        return None;
    }
    Some(Threshold((HASH_BUCKETS - scaled.min(HASH_BUCKETS)) << 42))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors_and_the_collector() {
        // FNV-1a 32 reference values (seed bytes aside): "" and "a".
        let plain =
            |b: &[u8]| b.iter().fold(0x811c_9dc5u32, |h, x| (h ^ u32::from(*x)).wrapping_mul(0x0100_0193));
        assert_eq!(plain(b""), 0x811c_9dc5);
        assert_eq!(plain(b"a"), 0xe40c_292c);
        assert_eq!(plain(b"foobar"), 0xbf9c_f968);
        // The seed is hashed first as four little-endian bytes.
        assert_eq!(fnv1a_seeded(b"a", 0x0403_0201), plain(&[1, 2, 3, 4, b'a']));
        // The Collector's TestEmptyHashFunction: seed 0, no bytes → 0x3515;
        // seed 0, sixteen zero bytes → 0x2455 (low 14 bits).
        assert_eq!(fnv1a_seeded(b"", 0) & 0x3fff, 0x3515);
        assert_eq!(fnv1a_seeded(&[0; 16], 0) & 0x3fff, 0x2455);
    }

    #[test]
    fn hash_randomness_matches_the_collector() {
        // Outputs of the Collector's code as run by Grafana Alloy's tests of
        // its wrapper: hash_seed 123, trace id 0123456789abcdef0123456789abcdef
        // gives `ot=rv:db840a0a82091e;th:0`; a log record with an empty
        // (all-zero) trace id and `foo: bar`, from_attribute foo, gives
        // `sampling.randomness: 37e0313b4df207`: the hash of "bar".
        let tid =
            [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        assert_eq!(hash_randomness(&tid, 123).rvalue(), "db840a0a82091e");
        assert_eq!(hash_randomness(b"bar", 123).rvalue(), "37e0313b4df207");
    }

    #[test]
    fn hash_thresholds_match_the_collector() {
        // The Collector's HashSeedTraceState test: the `th` each percentage
        // writes, 14-bit rounding included (10% is e668, not e666).
        for (percent, th) in [
            (100.0, "0"),
            (75.0, "4"),
            (50.0, "8"),
            (25.0, "c"),
            (10.0, "e668"),
            (100.0 / 3.0, "aaac"),
            (200.0, "0"),
        ] {
            assert_eq!(hash_threshold(percent).map(Threshold::tvalue).as_deref(), Some(th), "{percent}%");
        }
        // 0.006% is 0.98 of one bucket in 32-bit floats: never.
        assert_eq!(hash_threshold(0.006), None);
        assert_eq!(hash_threshold(0.0), None);
        assert_eq!(hash_threshold(0.0062).map(Threshold::tvalue).as_deref(), Some("fffc"));
    }

    #[test]
    fn thresholds_from_probabilities_match_the_spec_and_the_collector() {
        for (p, precision, th) in [
            // The specification's examples.
            (1.0, 4, "0"),
            (0.5, 4, "8"),
            (0.25, 4, "c"),
            (0.1, 4, "e666"),
            (0.1, 0, "e6666666666666"),
            (1.0 / 3.0, 4, "aaab"),
            // The Collector's TraceState test table: near 0 a digit is added
            // per leading f (1% at precision 4 has five digits).
            (0.01, 4, "fd70a"),
            (0.01, 3, "fd71"),
            (0.01, 0, "fd70a3d70a3d71"),
            (0.4, 3, "99a"),
            (0.4, 6, "99999a"),
            (0.2, 6, "cccccd"),
            (f64::from(99.99992f32) / 100.0, 10, "00000cccccccd"),
            (0.5f64.powi(28), 4, "fffffff"),
        ] {
            let got = Threshold::from_probability(p, precision).map(Threshold::tvalue);
            assert_eq!(got.as_deref(), Some(th), "p={p} precision={precision}");
        }
        assert_eq!(Threshold::from_probability(0.0, 4), None);
        assert_eq!(Threshold::from_probability(0.5f64.powi(57), 4), None);
        assert_eq!(Threshold::from_probability(1.5, 4), None);
    }

    #[test]
    fn values_round_trip_and_bad_ones_are_refused() {
        assert_eq!(Threshold::from_tvalue("c").unwrap_or(Threshold::NEVER).probability(), 0.25);
        assert_eq!(Threshold::from_tvalue("80000000000000").map(Threshold::tvalue).as_deref(), Ok("8"));
        assert_eq!(Threshold::from_tvalue("0"), Ok(Threshold::ALWAYS));
        assert_eq!(Threshold::from_tvalue(""), Err(ValueError::TValueSize));
        assert_eq!(Threshold::from_tvalue("abababababababab"), Err(ValueError::TValueSize));
        assert_eq!(Threshold::from_tvalue("-1"), Err(ValueError::Syntax));
        assert_eq!(Threshold::from_tvalue("+1"), Err(ValueError::Syntax));
        assert_eq!(
            Randomness::from_rvalue("FD70A3D70A3D71").map(Randomness::rvalue).as_deref(),
            Ok("fd70a3d70a3d71")
        );
        assert_eq!(Randomness::from_rvalue("abababababababab"), Err(ValueError::RValueSize));
        assert_eq!(Randomness::from_rvalue("zzzzzzzzzzzzzz"), Err(ValueError::Syntax));
        assert_eq!(Threshold::NEVER.tvalue(), "");
        assert!(!Threshold::NEVER.should_sample(Randomness::ALL));
        assert!(Threshold::ALWAYS.should_sample(Randomness(0)));
    }

    #[test]
    fn trace_id_randomness_is_the_low_56_bits() {
        let id = [0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x80, 0, 0, 0, 0, 0, 0];
        assert_eq!(Randomness::from_trace_id(&id), Some(Randomness(0x80 << 48)));
        assert_eq!(Randomness::from_trace_id(&[0; 16]), None);
        assert_eq!(Randomness::from_trace_id(&[1; 8]), None);
        assert_eq!(Randomness::from_trace_id(&[0xff; 16]), Some(Randomness::ALL));
    }
}
