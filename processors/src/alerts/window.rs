//! The data points a rule has seen within its window, per series, and the
//! aggregations over them. Pure functions of the samples.

use super::rule::Aggregation;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// One data point's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    /// Explicit bucket bounds and counts (one more count than bounds: +Inf).
    Histogram {
        bounds: Vec<f64>,
        counts: Vec<u64>,
    },
}

impl Value {
    /// The number, or a histogram's observation count (so `rate` of a
    /// histogram is its rate of observations).
    fn number(&self) -> f64 {
        match self {
            Value::Number(v) => *v,
            Value::Histogram { counts, .. } => counts.iter().sum::<u64>() as f64,
        }
    }
}

/// How successive values of a series relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A gauge: each value stands alone.
    Gauge,
    /// A cumulative sum or histogram: totals since a start; a drop is a reset.
    Cumulative,
    /// A delta sum or histogram: each value is what happened since the previous one.
    Delta,
}

/// The samples of one series, oldest first.
#[derive(Clone, Debug)]
pub struct Series {
    pub kind: Kind,
    pub samples: VecDeque<(SystemTime, Value)>,
}

impl Series {
    pub fn new(kind: Kind) -> Self {
        Series { kind, samples: VecDeque::new() }
    }

    /// Adds a sample, keeping time order (late points are rare; they are inserted in place).
    pub fn push(&mut self, at: SystemTime, value: Value) {
        let pos = self.samples.iter().rposition(|(t, _)| *t <= at).map_or(0, |i| i + 1);
        if pos > 0 && self.samples[pos - 1].0 == at {
            self.samples[pos - 1].1 = value;
        } else {
            self.samples.insert(pos, (at, value));
        }
    }

    /// Drops samples older than `since`.
    pub fn prune(&mut self, since: SystemTime) {
        while self.samples.front().is_some_and(|(t, _)| *t < since) {
            self.samples.pop_front();
        }
    }
}

/// The aggregation over every series of one group, `None` without data.
pub fn aggregate(agg: Aggregation, series: &[&Series], window: Duration) -> Option<f64> {
    let numbers = || {
        series
            .iter()
            .flat_map(|s| &s.samples)
            .filter_map(|(_, v)| if let Value::Number(n) = v { Some(*n) } else { None })
    };
    match agg {
        Aggregation::Count => {
            let n: usize = series.iter().map(|s| s.samples.len()).sum();
            (n > 0).then_some(n as f64)
        }
        Aggregation::Sum => numbers().reduce(|a, b| a + b),
        Aggregation::Max => numbers().reduce(f64::max),
        Aggregation::Min => numbers().reduce(f64::min),
        Aggregation::Avg => {
            let (sum, n) = numbers().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
            (n > 0).then(|| sum / n as f64)
        }
        Aggregation::Rate => {
            let rates: Vec<f64> = series.iter().filter_map(|s| rate(s, window)).collect();
            (!rates.is_empty()).then(|| rates.iter().sum())
        }
        Aggregation::P50 | Aggregation::P95 | Aggregation::P99 => {
            let q = agg.quantile().unwrap_or(0.5);
            match merged_buckets(series) {
                Some((bounds, counts)) => histogram_quantile(q, &bounds, &counts),
                None => quantile(q, numbers().collect()),
            }
        }
    }
}

/// Per-second increase of one series over the window. A cumulative series
/// needs two samples; a value lower than the one before is a reset (the
/// counter restarted from zero), so the increase across it is the new value,
/// as Prometheus' `rate` counts it. The increase is divided by the time
/// between the first and last sample. A delta series adds its values and
/// divides by the window. A gauge is read as a counter.
pub fn rate(s: &Series, window: Duration) -> Option<f64> {
    match s.kind {
        Kind::Delta => {
            let secs = window.as_secs_f64();
            (!s.samples.is_empty() && secs > 0.0)
                .then(|| s.samples.iter().map(|(_, v)| v.number()).sum::<f64>() / secs)
        }
        Kind::Cumulative | Kind::Gauge => {
            let (first, last) = (s.samples.front()?, s.samples.back()?);
            let secs = last.0.duration_since(first.0).ok()?.as_secs_f64();
            if secs <= 0.0 {
                return None;
            }
            let mut increase = 0.0;
            let mut prev = first.1.number();
            for (_, v) in s.samples.iter().skip(1) {
                let v = v.number();
                increase += if v >= prev { v - prev } else { v };
                prev = v;
            }
            Some(increase / secs)
        }
    }
}

/// The bucket counts observed within the window, summed over the series
/// whose bounds equal the first histogram's. A cumulative series
/// contributes its increase per bucket (reset-aware, as [`rate`]), or its
/// counts as they are when it has a single sample; a delta series the sum
/// of its samples.
fn merged_buckets(series: &[&Series]) -> Option<(Vec<f64>, Vec<u64>)> {
    let mut merged: Option<(Vec<f64>, Vec<u64>)> = None;
    for s in series {
        let hists: Vec<(&Vec<f64>, &Vec<u64>)> = s
            .samples
            .iter()
            .filter_map(|(_, v)| match v {
                Value::Histogram { bounds, counts } if counts.len() == bounds.len() + 1 => {
                    Some((bounds, counts))
                }
                _ => None,
            })
            .collect();
        let Some((bounds, _)) = hists.first() else { continue };
        let (mb, mc) = merged.get_or_insert_with(|| ((*bounds).clone(), vec![0; bounds.len() + 1]));
        let add = |mc: &mut Vec<u64>, counts: &[u64]| {
            for (m, c) in mc.iter_mut().zip(counts) {
                *m += c;
            }
        };
        match s.kind {
            Kind::Delta | Kind::Gauge => {
                for (b, c) in &hists {
                    if *b == mb {
                        add(mc, c);
                    }
                }
            }
            Kind::Cumulative => {
                let same: Vec<&Vec<u64>> = hists.iter().filter(|(b, _)| *b == mb).map(|(_, c)| *c).collect();
                match same.as_slice() {
                    [] => {}
                    [only] => add(mc, only),
                    _ => {
                        for pair in same.windows(2) {
                            let (prev, cur) = (pair[0], pair[1]);
                            let reset = cur.iter().sum::<u64>() < prev.iter().sum::<u64>();
                            for (i, m) in mc.iter_mut().enumerate() {
                                *m += if reset { cur[i] } else { cur[i].saturating_sub(prev[i]) };
                            }
                        }
                    }
                }
            }
        }
    }
    merged
}

/// Prometheus' `histogram_quantile` over explicit buckets: find the bucket
/// holding the rank `q × total` and interpolate linearly inside it. The
/// first bucket starts at 0 (when its upper bound is positive); a rank in
/// the +Inf bucket answers the highest finite bound.
pub fn histogram_quantile(q: f64, bounds: &[f64], counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || bounds.is_empty() {
        return None;
    }
    let rank = q * total as f64;
    let mut before = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        let cumulative = before + c;
        if cumulative as f64 >= rank && c > 0 {
            let Some(&end) = bounds.get(i) else { return bounds.last().copied() };
            let start = if i == 0 {
                if end <= 0.0 {
                    return Some(end);
                }
                0.0
            } else {
                bounds[i - 1]
            };
            return Some(start + (end - start) * (rank - before as f64) / c as f64);
        }
        before = cumulative;
    }
    bounds.last().copied()
}

/// The `q` quantile of plain values, interpolated between the closest
/// ranks (Prometheus' `quantile_over_time`).
pub fn quantile(q: f64, mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = q * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let w = rank - lower as f64;
    Some(values[lower] * (1.0 - w) + values[upper] * w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_600_000 + secs)
    }

    fn series(kind: Kind, values: &[(u64, f64)]) -> Series {
        let mut s = Series::new(kind);
        for (at, v) in values {
            s.push(t(*at), Value::Number(*v));
        }
        s
    }

    fn hist(kind: Kind, bounds: &[f64], points: &[(u64, &[u64])]) -> Series {
        let mut s = Series::new(kind);
        for (at, counts) in points {
            s.push(t(*at), Value::Histogram { bounds: bounds.to_vec(), counts: counts.to_vec() });
        }
        s
    }

    const W: Duration = Duration::from_secs(60);

    fn check(agg: Aggregation, series: &[&Series], want: Option<f64>) {
        let got = aggregate(agg, series, W);
        match (got, want) {
            (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{agg:?}: got {g}, want {w}"),
            _ => assert_eq!(got, want, "{agg:?}"),
        }
    }

    #[test]
    fn plain_aggregations_pool_every_series() {
        let a = series(Kind::Gauge, &[(0, 4.0), (10, 8.0), (20, 6.0)]);
        let b = series(Kind::Gauge, &[(5, 2.0)]);
        check(Aggregation::Avg, &[&a, &b], Some(5.0));
        check(Aggregation::Max, &[&a, &b], Some(8.0));
        check(Aggregation::Min, &[&a, &b], Some(2.0));
        check(Aggregation::Sum, &[&a, &b], Some(20.0));
        check(Aggregation::Count, &[&a, &b], Some(4.0));
        for agg in
            [Aggregation::Avg, Aggregation::Max, Aggregation::Min, Aggregation::Sum, Aggregation::Count]
        {
            check(agg, &[], None);
        }
    }

    #[test]
    fn rate_of_a_counter_survives_a_reset() {
        // 10 → 40 (+30), reset to 5 (+5), → 25 (+20): 55 over 30 s.
        let s = series(Kind::Cumulative, &[(0, 10.0), (10, 40.0), (20, 5.0), (30, 25.0)]);
        check(Aggregation::Rate, &[&s], Some(55.0 / 30.0));
        // Two series add up, as sum(rate(...)) does.
        let other = series(Kind::Cumulative, &[(0, 0.0), (30, 30.0)]);
        check(Aggregation::Rate, &[&s, &other], Some(55.0 / 30.0 + 1.0));
        // One sample is no rate yet.
        check(Aggregation::Rate, &[&series(Kind::Cumulative, &[(0, 10.0)])], None);
        // Deltas add up over the window.
        check(Aggregation::Rate, &[&series(Kind::Delta, &[(0, 30.0), (30, 90.0)])], Some(2.0));
    }

    #[test]
    fn histogram_quantiles_interpolate_as_prometheus() {
        // Buckets (0,0.1] (0.1,0.5] (0.5,1] (1,+Inf] with 10, 20, 10, 0 observations.
        let bounds = [0.1, 0.5, 1.0];
        let counts = [10, 20, 10, 0];
        // p50: rank 20 falls in (0.1,0.5] after 10: 0.1 + 0.4 × 10/20 = 0.3.
        assert!((histogram_quantile(0.5, &bounds, &counts).unwrap() - 0.3).abs() < 1e-12);
        // p95: rank 38 falls in (0.5,1] after 30: 0.5 + 0.5 × 8/10 = 0.9.
        assert!((histogram_quantile(0.95, &bounds, &counts).unwrap() - 0.9).abs() < 1e-12);
        // p10: rank 4 in the first bucket, which starts at 0: 0.1 × 4/10 = 0.04.
        assert!((histogram_quantile(0.1, &bounds, &counts).unwrap() - 0.04).abs() < 1e-12);
        // A rank in +Inf answers the highest finite bound.
        assert_eq!(histogram_quantile(0.99, &bounds, &[0, 0, 90, 10]), Some(1.0));
        assert_eq!(histogram_quantile(0.5, &bounds, &[0, 0, 0, 0]), None);
    }

    #[test]
    fn quantiles_of_cumulative_histograms_use_the_increase_in_the_window() {
        let bounds = [0.1, 0.5, 1.0];
        // Before the window's increase: 100 fast requests; within it, 10/20/10 more.
        let s = hist(Kind::Cumulative, &bounds, &[(0, &[100, 0, 0, 0]), (30, &[110, 20, 10, 0])]);
        check(Aggregation::P50, &[&s], Some(0.3));
        // A reset: the second sample is the new total.
        let r = hist(Kind::Cumulative, &bounds, &[(0, &[100, 50, 0, 0]), (30, &[10, 20, 10, 0])]);
        check(Aggregation::P50, &[&r], Some(0.3));
        // Deltas add up; two series merge.
        let d1 = hist(Kind::Delta, &bounds, &[(0, &[5, 10, 0, 0]), (10, &[5, 0, 0, 0])]);
        let d2 = hist(Kind::Delta, &bounds, &[(5, &[0, 10, 10, 0])]);
        check(Aggregation::P50, &[&d1, &d2], Some(0.3));
        check(Aggregation::P99, &[&d1, &d2], Some(0.5 + 0.5 * 9.6 / 10.0));
    }

    #[test]
    fn quantiles_of_gauges_interpolate_between_ranks() {
        let s = series(Kind::Gauge, &[(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0), (4, 5.0)]);
        check(Aggregation::P50, &[&s], Some(3.0));
        // rank 0.95 × 4 = 3.8: 4 + 0.8 × (5 − 4).
        check(Aggregation::P95, &[&s], Some(4.8));
        check(Aggregation::P99, &[&s], Some(4.96));
        check(Aggregation::P50, &[], None);
    }

    #[test]
    fn samples_stay_in_time_order_and_prune() {
        let mut s = series(Kind::Gauge, &[(10, 1.0), (30, 3.0)]);
        s.push(t(20), Value::Number(2.0));
        s.push(t(30), Value::Number(4.0));
        let values: Vec<f64> = s.samples.iter().map(|(_, v)| v.number()).collect();
        assert_eq!(values, vec![1.0, 2.0, 4.0]);
        s.prune(t(20));
        assert_eq!(s.samples.len(), 2);
    }
}
