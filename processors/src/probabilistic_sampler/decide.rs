//! The sampling decision for one span or log record: a pure function of
//! the item's trace id, its sampling state (`tracestate`, or the
//! `sampling.*` attributes of a log record), its priority and the config.
//! It follows the Collector's `probabilistic_sampler` step by step:
//!
//! 1. Randomness: in `hash_seed` mode the FNV-1a hash of the trace id (or,
//!    for logs, of `from_attribute`'s value) with the seed; in the consistent
//!    modes an `rv` value if the item has one, else the trace id's low 56
//!    bits. An all-zero trace id has none.
//! 2. Errors: unreadable sampling state, no randomness, an `rv`/`th` met in
//!    `hash_seed` mode, or an arriving `th` the randomness contradicts. Each
//!    decides by `fail_closed` alone (drop, or keep at 100%).
//! 3. The threshold: fixed (`hash_seed`, `equalizing`, which never lowers an
//!    arriving one), or the arriving probability times the configured one
//!    (`proportional`).
//! 4. Priority overrides: 0 drops, more keeps (traces); a percentage that
//!    can only raise the probability (logs, `sampling_priority`).
//! 5. A kept item carries the threshold it was kept at (`th`), never one
//!    lower than it arrived with, and in `hash_seed` mode its randomness.

use super::consistent::{Randomness, Threshold, hash_randomness, hash_threshold};
use super::tracestate::{TraceState, TraceStateError};

/// How the decision is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The Collector's original FNV-1a hash of the trace id with `hash_seed`
    /// (14 bits of the hash decide); the default.
    #[default]
    HashSeed,
    /// OpenTelemetry consistent probability sampling, multiplying the
    /// probability items arrive with.
    Proportional,
    /// OpenTelemetry consistent probability sampling, lowering every item's
    /// probability to the configured one (items already sampled lower pass).
    Equalizing,
}

/// Why an item's sampling information could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    TraceState(#[from] TraceStateError),
    #[error("log record sampling.{0}: {1}")]
    LogAttribute(&'static str, super::consistent::ValueError),
    #[error("missing randomness: the trace id is invalid (all zeros) and there is no rv")]
    MissingRandomness,
    #[error("item has sampling randomness (rv); equalizing or proportional mode recommended")]
    RandomnessInUse,
    #[error("item has a sampling threshold (th); equalizing or proportional mode recommended")]
    ThresholdInUse,
    #[error("inconsistent arriving threshold: the item should not have been sampled")]
    InconsistentThreshold,
}

/// A span's `sampling.priority`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Defer,
    Keep,
    Drop,
}

/// The sampling state an item carries: `rv` and `th`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    pub rv: Option<Randomness>,
    pub th: Option<Threshold>,
}

trait Carrier {
    fn rv(&self) -> Option<Randomness>;
    fn set_rv(&mut self, r: Randomness);
    fn th(&self) -> Option<Threshold>;
    fn set_th(&mut self, th: Option<Threshold>);
}

impl Carrier for TraceState {
    fn rv(&self) -> Option<Randomness> {
        self.randomness()
    }
    fn set_rv(&mut self, r: Randomness) {
        self.set_randomness(r);
    }
    fn th(&self) -> Option<Threshold> {
        self.th
    }
    fn set_th(&mut self, th: Option<Threshold>) {
        self.th = th;
    }
}

impl Carrier for LogState {
    fn rv(&self) -> Option<Randomness> {
        self.rv
    }
    fn set_rv(&mut self, r: Randomness) {
        self.rv = Some(r);
    }
    fn th(&self) -> Option<Threshold> {
        self.th
    }
    fn set_th(&mut self, th: Option<Threshold>) {
        self.th = th;
    }
}

/// What became of an item.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<S> {
    pub keep: bool,
    /// The sampling state to write on a kept item; `None` when it is to be
    /// left as it arrived (unreadable, or `rv`/`th` met in `hash_seed` mode).
    pub state: Option<S>,
    /// What kept the item from being decided on its randomness.
    pub error: Option<SampleError>,
    /// Whether a priority decided.
    pub by_priority: bool,
}

/// The config the decision depends on, resolved once.
#[derive(Clone, Debug)]
pub struct Sampler {
    mode: Mode,
    rule: Rule,
    hash_seed: u32,
    precision: usize,
    fail_closed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// 0% (or a `hash_seed` rate below one bucket).
    Never,
    /// `hash_seed` and `equalizing`.
    Fixed(Threshold),
    /// `proportional`: the ratio in `[2^-56, 1]`.
    Ratio(f64),
}

impl Sampler {
    /// `percent` is a 32-bit float as in the Collector, so the same setting
    /// gives the same thresholds; above 100 means 100.
    pub fn new(mode: Mode, percent: f32, hash_seed: u32, precision: usize, fail_closed: bool) -> Sampler {
        let percent = percent.min(100.0);
        let ratio = (f64::from(percent) / 100.0).max(super::consistent::MIN_PROBABILITY);
        let rule = if percent <= 0.0 || percent.is_nan() {
            Rule::Never
        } else {
            match mode {
                Mode::HashSeed => hash_threshold(percent).map_or(Rule::Never, Rule::Fixed),
                Mode::Equalizing => {
                    Rule::Fixed(Threshold::from_probability(ratio, precision).unwrap_or(Threshold::ALWAYS))
                }
                Mode::Proportional => Rule::Ratio(ratio),
            }
        };
        Sampler { mode, rule, hash_seed, precision, fail_closed }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn precision(&self) -> usize {
        self.precision
    }

    /// Decides a span from its trace id, `tracestate` and priority; a kept
    /// span's state serializes to its new `tracestate`.
    pub fn decide_span(&self, trace_id: &[u8], tracestate: &str, priority: Priority) -> Decision<TraceState> {
        let parsed = TraceState::parse(tracestate).map_err(SampleError::from);
        let tid = Randomness::from_trace_id(trace_id);
        let hashed = tid.map(|_| hash_randomness(trace_id, self.hash_seed));
        let fixed = match priority {
            Priority::Defer => None,
            Priority::Keep => Some(Threshold::ALWAYS),
            Priority::Drop => Some(Threshold::NEVER),
        };
        self.decide(parsed, tid, hashed, |_| fixed)
    }

    /// Decides a log record from its `sampling.*` state, its trace id (`None`
    /// when `attribute_source` is `record`), the bytes of its
    /// `from_attribute` value (used when there is no valid trace id) and the
    /// percentage its `sampling_priority` attribute asks for.
    pub fn decide_log(
        &self,
        state: Result<LogState, SampleError>,
        trace_id: Option<&[u8]>,
        attribute: Option<&[u8]>,
        priority_percent: Option<f64>,
    ) -> Decision<LogState> {
        let (w3c, hashed) = match trace_id.and_then(|t| Randomness::from_trace_id(t).map(|r| (t, r))) {
            Some((t, r)) => (Some(r), Some(hash_randomness(t, self.hash_seed))),
            None => {
                let h = attribute.map(|a| hash_randomness(a, self.hash_seed));
                (h, h)
            }
        };
        let precision = self.precision;
        self.decide(state, w3c, hashed, move |decided| {
            let p = priority_percent?;
            if p == 0.0 {
                return Some(Threshold::NEVER);
            }
            if p.is_nan() || p < 0.0 {
                return None;
            }
            let asked = Threshold::from_probability((p / 100.0).min(1.0), precision)?;
            (asked < decided).then_some(asked)
        })
    }

    /// Steps 1–5 of the module documentation over any carrier. `w3c` is the
    /// trace-id randomness of the consistent modes (or the attribute hash for
    /// logs without one), `hashed` the `hash_seed` mode's; `priority` may
    /// replace the threshold decided.
    fn decide<C: Carrier>(
        &self,
        parsed: Result<C, SampleError>,
        w3c: Option<Randomness>,
        hashed: Option<Randomness>,
        priority: impl Fn(Threshold) -> Option<Threshold>,
    ) -> Decision<C> {
        let (randomness, mut carrier, mut error) = if self.rule == Rule::Never {
            // Nothing passes but by priority: randomness does not matter.
            (Some(Randomness::ALL), parsed.ok(), None)
        } else if self.mode == Mode::HashSeed {
            match parsed {
                Err(e) => (hashed, None, Some(e)),
                Ok(c) if c.rv().is_some() => (hashed, None, Some(SampleError::RandomnessInUse)),
                Ok(c) if c.th().is_some() => (hashed, None, Some(SampleError::ThresholdInUse)),
                Ok(mut c) => {
                    if let Some(r) = hashed {
                        c.set_rv(r);
                    }
                    (hashed, Some(c), None)
                }
            }
        } else {
            match parsed {
                Err(e) => (None, None, Some(e)),
                Ok(c) => (c.rv().or(w3c), Some(c), None),
            }
        };
        if error.is_none() {
            match (randomness, carrier.as_mut()) {
                (None, _) => error = Some(SampleError::MissingRandomness),
                (Some(r), Some(c)) if c.th().is_some_and(|th| !th.should_sample(r)) => {
                    c.set_th(None);
                    error = Some(SampleError::InconsistentThreshold);
                }
                _ => {}
            }
        }
        let decided = match (&error, self.rule) {
            (Some(_), _) if self.fail_closed => Threshold::NEVER,
            (Some(_), _) => Threshold::ALWAYS,
            (None, Rule::Never) => Threshold::NEVER,
            (None, Rule::Fixed(th)) => match carrier.as_ref().and_then(Carrier::th) {
                // Equalizing never raises an arriving probability.
                Some(arrived) if self.mode == Mode::Equalizing && arrived > th => arrived,
                _ => th,
            },
            (None, Rule::Ratio(ratio)) => {
                let arrived = carrier.as_ref().and_then(Carrier::th).map_or(1.0, Threshold::probability);
                Threshold::from_probability(arrived * ratio, self.precision).unwrap_or(Threshold::NEVER)
            }
        };
        let (threshold, by_priority) = match priority(decided) {
            Some(th) => (th, true),
            None => (decided, false),
        };
        let keep = threshold.should_sample(randomness.unwrap_or(Randomness::ALL));
        if keep && let Some(c) = carrier.as_mut() {
            // A threshold below the arriving one would raise the item's
            // probability, which sampling never does: the arriving one stays.
            if c.th().is_none_or(|arrived| arrived <= threshold) {
                c.set_th(Some(threshold));
            }
        }
        Decision { keep, state: if keep { carrier } else { None }, error, by_priority }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(hex: &str) -> Vec<u8> {
        (0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
    }

    /// The Collector's default trace id for its TraceState table: randomness
    /// 0x80000000000000, kept at 50% and not at 49%.
    const DEFAULT_TID: &str = "fefefefefefefefefe80000000000000";
    const IMPROBABLE_TID: &str = "111111111111111111ffffffffffffff";

    struct Case {
        name: &'static str,
        percent: f32,
        precision: usize,
        tid: &'static str,
        ts: &'static str,
        priority: Priority,
        fail_closed: bool,
        /// The tracestate a kept span leaves with (`None`: dropped), for
        /// equalizing and for proportional.
        equalizing: Option<&'static str>,
        proportional: Option<&'static str>,
    }

    const fn case(name: &'static str, percent: f32, ts: &'static str, both: Option<&'static str>) -> Case {
        Case {
            name,
            percent,
            // The Collector's table leaves the precision unset (0: all 14
            // digits) unless a case names one.
            precision: 0,
            tid: DEFAULT_TID,
            ts,
            priority: Priority::Defer,
            fail_closed: false,
            equalizing: both,
            proportional: both,
        }
    }

    /// The Collector's `Test_tracesamplerprocessor_TraceState` table
    /// (processor/probabilisticsamplerprocessor/tracesprocessor_test.go), in
    /// both consistent modes: `None` is dropped, `Some(ts)` kept with `ts`.
    fn collector_table() -> Vec<Case> {
        vec![
            case("100 percent", 100.0, "", Some("ot=th:0")),
            case("50 percent sampled", 50.0, "", Some("ot=th:8")),
            Case {
                tid: "ddddddddddddddddddc0000000000000",
                ..case("25 percent sampled", 25.0, "", Some("ot=th:c"))
            },
            Case { tid: "ddddddddddddddddddb0000000000000", ..case("25 percent unsampled", 25.0, "", None) },
            Case {
                ..case(
                    "1 percent sampled",
                    1.0,
                    "ot=rv:FD70A3D70A3D71",
                    Some("ot=rv:FD70A3D70A3D71;th:fd70a3d70a3d71"),
                )
            },
            Case {
                precision: 4,
                ..case(
                    "1 percent sampled with rvalue and precision 4",
                    1.0,
                    "ot=rv:FD70A3D70A3D71",
                    Some("ot=rv:FD70A3D70A3D71;th:fd70a"),
                )
            },
            Case {
                precision: 3,
                ..case("1 percent with rvalue and precision 3", 1.0, "ot=rv:FD70A3D70A3D71", None)
            },
            case("1 percent not sampled with rvalue", 1.0, "ot=rv:FD70A3D70A3D70", None),
            case("49 percent not sampled with default tid", 49.0, "", None),
            Case {
                ..case(
                    "1 percent sampled with rvalue",
                    1.0,
                    "ot=rv:fd70B000000000",
                    Some("ot=rv:fd70B000000000;th:fd70a3d70a3d71"),
                )
            },
            Case {
                precision: 4,
                tid: "a0a0a0a0a0a0a0a0a0fe000000000000",
                ..case("1 percent sampled with tid", 1.0, "", Some("ot=th:fd70a"))
            },
            Case { priority: Priority::Keep, ..case("sampled by priority", 1.0, "", Some("ot=th:0")) },
            Case { priority: Priority::Drop, ..case("not sampled by priority", 99.0, "", None) },
            Case {
                equalizing: Some("ot=rv:90000000000000;th:8"),
                proportional: None,
                ..case(
                    "incoming 50 percent with rvalue",
                    50.0,
                    "ot=rv:90000000000000;th:80000000000000",
                    None,
                )
            },
            case("incoming 50 percent at 25 percent not sampled", 25.0, "ot=th:8", None),
            Case {
                tid: "ffffffffffffffffffffffffffffffff",
                equalizing: Some("ot=th:c"),
                proportional: Some("ot=th:e"),
                ..case("incoming 50 percent at 25 percent sampled", 25.0, "ot=th:8", None)
            },
            Case {
                equalizing: Some("ot=rv:c0000000000000;th:8"),
                proportional: Some("ot=rv:c0000000000000;th:c"),
                ..case("equalizing vs proportional", 50.0, "ot=rv:c0000000000000;th:8", None)
            },
            case(
                "inconsistent arriving threshold",
                100.0,
                "ot=rv:40000000000000;th:8",
                Some("ot=rv:40000000000000;th:0"),
            ),
            Case {
                fail_closed: true,
                ..case("inconsistent arriving threshold not sampled", 1.0, "ot=rv:40000000000000;th:8", None)
            },
            Case {
                precision: 3,
                ..case(
                    "40 percent precision 3 with rvalue",
                    40.0,
                    "ot=rv:a0000000000000",
                    Some("ot=rv:a0000000000000;th:99a"),
                )
            },
            Case {
                precision: 6,
                tid: "a0a0a0a0a0a0a0a0a0d0000000000000",
                equalizing: Some("ot=th:99999a"),
                proportional: Some("ot=th:cccccd"),
                ..case(
                    "arriving 50 percent sampled at 40 percent precision 6 with tid",
                    40.0,
                    "ot=th:8",
                    None,
                )
            },
            Case {
                precision: 3,
                tid: "a0a0a0a0a0a0a0a0a0b0000000000000",
                equalizing: Some("ot=th:99a"),
                proportional: None,
                ..case("arriving 50 percent sampled at 40 percent partly sampled", 40.0, "ot=th:8", None)
            },
            Case {
                precision: 3,
                tid: "a0a0a0a0a0a0a0a0a080000000000000",
                ..case("arriving 50 percent sampled at 40 percent not sampled", 40.0, "ot=th:8", None)
            },
            case("200 percent equals 100 percent", 200.0, "", Some("ot=th:0")),
            Case {
                tid: IMPROBABLE_TID,
                equalizing: Some("ot=th:fffc"),
                proportional: Some("ot=th:fffffff"),
                ..case("tiny probability rounding", 100.0 * 0.5f32.powi(14), "ot=th:fffc", None)
            },
            Case {
                precision: 10,
                tid: IMPROBABLE_TID,
                ..case("almost 100pct sampling", 99.99992, "", Some("ot=th:00000cccccccd"))
            },
            Case {
                tid: IMPROBABLE_TID,
                equalizing: Some("ot=th:fffffffffffff8"),
                proportional: None,
                ..case("probability underflow", 0.0625, "ot=th:fffffffffffff8", None)
            },
        ]
    }

    #[test]
    fn consistent_modes_match_the_collector_table() {
        for c in collector_table() {
            for (mode, want) in [(Mode::Equalizing, c.equalizing), (Mode::Proportional, c.proportional)] {
                let s = Sampler::new(mode, c.percent, 4312, c.precision, c.fail_closed);
                let d = s.decide_span(&tid(c.tid), c.ts, c.priority);
                let got = d.keep.then(|| d.state.as_ref().map(TraceState::serialize).unwrap_or_default());
                assert_eq!(got.as_deref(), want, "{mode:?} {}", c.name);
            }
        }
    }

    #[test]
    fn collector_error_cases_drop_when_fail_closed() {
        let id = tid(DEFAULT_TID);
        for (name, id, ts, error) in [
            ("missing randomness", vec![0; 16], "", SampleError::MissingRandomness),
            (
                "invalid r-value",
                id.clone(),
                "ot=rv:abababababababab",
                SampleError::TraceState(TraceStateError::RValue(
                    super::super::consistent::ValueError::RValueSize,
                )),
            ),
            (
                "invalid t-value",
                id.clone(),
                "ot=th:abababababababab",
                SampleError::TraceState(TraceStateError::TValue(
                    super::super::consistent::ValueError::TValueSize,
                )),
            ),
            (
                "t-value syntax",
                id.clone(),
                "ot=th:-1",
                SampleError::TraceState(TraceStateError::TValue(
                    super::super::consistent::ValueError::Syntax,
                )),
            ),
            (
                "inconsistent t-value trace id",
                tid("ffffffffffffffffff70000000000000"),
                "ot=th:8",
                SampleError::InconsistentThreshold,
            ),
            (
                "inconsistent t-value r-value",
                id.clone(),
                "ot=th:8;rv:70000000000000",
                SampleError::InconsistentThreshold,
            ),
        ] {
            for mode in [Mode::Equalizing, Mode::Proportional] {
                let d = Sampler::new(mode, 100.0, 0, 4, true).decide_span(&id, ts, Priority::Defer);
                assert!(!d.keep, "{mode:?} {name}");
                assert_eq!(d.error.as_ref(), Some(&error), "{mode:?} {name}");
                // Failing open keeps it at 100%.
                let d = Sampler::new(mode, 100.0, 0, 4, false).decide_span(&id, ts, Priority::Defer);
                assert!(d.keep, "{mode:?} {name} fail open");
            }
        }
    }

    #[test]
    fn hash_seed_decides_on_the_hash_and_writes_rv_and_th() {
        // Alloy's test of the Collector: seed 123, 100% → `ot=rv:db840a0a82091e;th:0`.
        let s = Sampler::new(Mode::HashSeed, 100.0, 123, 4, true);
        let d = s.decide_span(&tid("0123456789abcdef0123456789abcdef"), "", Priority::Defer);
        assert!(d.keep);
        assert_eq!(d.state.map(|t| t.serialize()).as_deref(), Some("ot=rv:db840a0a82091e;th:0"));

        // Keep exactly when (FNV-1a(seed LE ++ trace id) mod 2^14) < ⌊pct·163.84⌋,
        // the Collector's original rule, on 20,000 pseudo-random ids.
        for (percent, seed) in [(25.0f32, 0u32), (10.0, 22), (15.3, 4312), (99.9, 7)] {
            let s = Sampler::new(Mode::HashSeed, percent, seed, 4, true);
            let scaled = (percent * (16384.0f32 / 100.0)) as u32;
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut kept = 0;
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let id = [x.to_be_bytes(), x.rotate_left(29).to_be_bytes()].concat();
                let rule = super::super::consistent::fnv1a_seeded(&id, seed) & 0x3fff < scaled;
                let d = s.decide_span(&id, "vendor=kept", Priority::Defer);
                assert_eq!(d.keep, rule, "{percent}% seed {seed} id {id:02x?}");
                if d.keep {
                    kept += 1;
                    let ts = d.state.map(|t| t.serialize()).unwrap_or_default();
                    assert!(ts.starts_with("ot=rv:") && ts.ends_with(",vendor=kept"), "{ts}");
                }
            }
            let expected = 20_000.0 * f64::from(percent) / 100.0;
            assert!((f64::from(kept) - expected).abs() < 5.0 * expected.sqrt() + 5.0, "{percent}%: {kept}");
        }
    }

    #[test]
    fn hash_seed_refuses_items_that_already_carry_sampling_state() {
        let id = tid(DEFAULT_TID);
        for (ts, error) in
            [("ot=rv:90000000000000", SampleError::RandomnessInUse), ("ot=th:8", SampleError::ThresholdInUse)]
        {
            let d = Sampler::new(Mode::HashSeed, 100.0, 1, 4, true).decide_span(&id, ts, Priority::Defer);
            assert_eq!((d.keep, d.error), (false, Some(error.clone())));
            // Failing open keeps it, with its tracestate as it arrived.
            let d = Sampler::new(Mode::HashSeed, 100.0, 1, 4, false).decide_span(&id, ts, Priority::Defer);
            assert_eq!((d.keep, d.state), (true, None));
        }
    }

    #[test]
    fn missing_randomness_follows_fail_closed_and_zero_percent_drops_all() {
        // The Collector's MissingRandomness table: (percent, fail_closed, kept).
        for mode in [Mode::HashSeed, Mode::Proportional, Mode::Equalizing] {
            for (percent, fail_closed, kept) in [
                (0.0, true, false),
                (62.0, true, false),
                (100.0, true, false),
                (0.0, false, false),
                (62.0, false, true),
                (100.0, false, true),
            ] {
                let d = Sampler::new(mode, percent, 4312, 4, fail_closed).decide_span(
                    &[0; 16],
                    "",
                    Priority::Defer,
                );
                assert_eq!(d.keep, kept, "{mode:?} {percent}% fail_closed={fail_closed}");
            }
        }
    }

    #[test]
    fn priority_overrides_every_mode() {
        // The Collector's SpanSamplingPriority table.
        let id = tid(DEFAULT_TID);
        for mode in [Mode::HashSeed, Mode::Proportional, Mode::Equalizing] {
            for (percent, priority, kept) in [
                (0.0, Priority::Keep, true),
                (100.0, Priority::Drop, false),
                (0.0, Priority::Defer, false),
                (100.0, Priority::Defer, true),
            ] {
                let d = Sampler::new(mode, percent, 4312, 4, true).decide_span(&id, "", priority);
                assert_eq!(d.keep, kept, "{mode:?} {percent}% {priority:?}");
                assert_eq!(d.by_priority, priority != Priority::Defer);
            }
        }
    }

    #[test]
    fn one_decision_per_trace_whatever_the_span() {
        // Every span of a trace has the same trace id; vendors' tracestate
        // entries and span order do not change the decision.
        for mode in [Mode::HashSeed, Mode::Proportional, Mode::Equalizing] {
            let s = Sampler::new(mode, 25.0, 9, 4, true);
            for n in 0u64..2_000 {
                let id = [
                    n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes(),
                    (n ^ 0xabcdef).rotate_left(40).to_be_bytes(),
                ]
                .concat();
                let root = s.decide_span(&id, "", Priority::Defer).keep;
                for ts in ["congo=t61rcWkgMzE", "a=1,b=2", ""] {
                    assert_eq!(s.decide_span(&id, ts, Priority::Defer).keep, root, "{mode:?}");
                }
            }
        }
    }

    #[test]
    fn logs_use_the_trace_id_then_the_attribute() {
        let s = Sampler::new(Mode::HashSeed, 100.0, 123, 4, true);
        // No trace id, no attribute: missing randomness, dropped (fail closed).
        let d = s.decide_log(Ok(LogState::default()), None, None, None);
        assert_eq!((d.keep, d.error), (false, Some(SampleError::MissingRandomness)));
        // An all-zero trace id is none: the attribute's bytes are hashed with
        // the seed. Alloy's test of the Collector: `foo: bar`, from_attribute
        // foo, seed 123 → sampling.randomness 37e0313b4df207, threshold 0.
        let d = s.decide_log(Ok(LogState::default()), Some(&[0; 16]), Some(b"bar"), None);
        let state = d.state.unwrap_or_default();
        assert_eq!(state.rv.map(Randomness::rvalue).as_deref(), Some("37e0313b4df207"));
        assert_eq!(state.th, Some(Threshold::ALWAYS));
        // A valid trace id wins over the attribute.
        let id = tid(DEFAULT_TID);
        let d = s.decide_log(Ok(LogState::default()), Some(&id), Some(b"1234"), None);
        assert_eq!(d.state.unwrap_or_default().rv, Some(hash_randomness(&id, 123)));
    }

    #[test]
    fn log_priority_is_a_percentage_that_only_raises() {
        let s = Sampler::new(Mode::Proportional, 1.0, 0, 4, true);
        let id = tid(DEFAULT_TID); // randomness 0x80…: kept at ≥ 50% only
        let keep = |p: Option<f64>| s.decide_log(Ok(LogState::default()), Some(&id), None, p).keep;
        assert!(!keep(None));
        assert!(keep(Some(100.0)));
        assert!(keep(Some(60.0)));
        assert!(!keep(Some(40.0)));
        assert!(!keep(Some(-5.0)));
        let s = Sampler::new(Mode::Proportional, 100.0, 0, 4, true);
        assert!(!s.decide_log(Ok(LogState::default()), Some(&id), None, Some(0.0)).keep, "0 drops");
        assert!(s.decide_log(Ok(LogState::default()), Some(&id), None, Some(10.0)).keep, "never lowers");
    }
}
