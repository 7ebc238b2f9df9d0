//! A latency histogram of fixed relative precision, so a run's memory does not grow
//! with its length: a sustained broadcast to 10,000 subscribers is millions of
//! deliveries, and keeping each one's latency would cost tens of bytes apiece.
//!
//! Values are nanoseconds. Below 128 ns each value has its own bucket; above, every
//! power of two is split into 128 equal buckets, so a bucket's midpoint is within
//! 1/256 (0.4%) of any value in it. A percentile is the midpoint of the bucket that
//! holds it, clamped to the smallest and largest value recorded; the maximum is exact.
//! The buckets grow on demand up to the largest value seen (about 21 KiB for latencies
//! around 100 ms). A hand-rolled one is a few lines; `hdrhistogram` is not in the
//! workspace and would be a new dependency for this alone.

use std::time::Duration;

use crate::measure::Percentiles;

/// Sub-buckets per power of two, and the values below which buckets are exact.
const SUB: u64 = 128;
const SUB_BITS: u32 = 7;

#[derive(Debug, Clone, Default)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    n: u64,
    min: u64,
    max: u64,
}

impl Histogram {
    pub(crate) fn record(&mut self, value: Duration) {
        let v = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let i = index(v);
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.min = if self.n == 0 { v } else { self.min.min(v) };
        self.max = self.max.max(v);
        self.n += 1;
    }

    /// Adds `other`'s values to these.
    pub(crate) fn merge(&mut self, other: &Self) {
        if other.n == 0 {
            return;
        }
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.min = if self.n == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.n += other.n;
    }

    /// How many values were recorded.
    pub(crate) fn len(&self) -> u64 {
        self.n
    }

    /// The value at quantile `q` (0 ≤ q ≤ 1): the one of rank ⌈q·n⌉ (at least 1).
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut below = 0;
        for (i, count) in self.counts.iter().enumerate() {
            below += count;
            if below >= rank {
                return Some(Duration::from_nanos(midpoint(i).clamp(self.min, self.max)));
            }
        }
        Some(Duration::from_nanos(self.max))
    }

    pub(crate) fn percentiles(&self) -> Option<Percentiles> {
        Some(Percentiles {
            p50: self.quantile(0.5)?,
            p90: self.quantile(0.9)?,
            p99: self.quantile(0.99)?,
            p999: self.quantile(0.999)?,
            max: Duration::from_nanos(self.max),
        })
    }
}

/// The bucket of `v`.
fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    // v has `bits` significant bits (>= 8); its top SUB_BITS + 1 bits pick the bucket.
    let bits = 64 - v.leading_zeros();
    let shift = bits - SUB_BITS - 1;
    let top = (v >> shift) - SUB; // 0..SUB
    (SUB + u64::from(shift) * SUB + top) as usize
}

/// The middle of bucket `i`'s range.
fn midpoint(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let (shift, top) = ((i - SUB) / SUB, (i - SUB) % SUB);
    let low = (SUB + top) << shift;
    let width = 1u64 << shift;
    low + width / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: impl IntoIterator<Item = u64>) -> Histogram {
        let mut h = Histogram::default();
        for v in values {
            h.record(Duration::from_nanos(v));
        }
        h
    }

    #[test]
    fn small_values_are_exact() {
        let h = of(0..100);
        assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(49)));
        assert_eq!(h.quantile(0.0), Some(Duration::from_nanos(0)));
        assert_eq!(h.quantile(1.0), Some(Duration::from_nanos(99)));
        assert_eq!(h.len(), 100);
    }

    #[test]
    fn every_bucket_midpoint_is_within_its_precision() {
        // Values across the whole range, including each power of two and its neighbours.
        let mut values: Vec<u64> = (0..63).flat_map(|b| [(1u64 << b) - 1, 1 << b, (1 << b) + 1]).collect();
        values.extend([1_000, 12_345, 999_999, 123_456_789, 7_000_000_000, u64::MAX]);
        for v in values {
            let mid = midpoint(index(v));
            let error = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(
                error <= 1.0 / 256.0 + 1e-12,
                "{v} -> bucket midpoint {mid}: error {error}"
            );
        }
    }

    #[test]
    fn buckets_are_in_value_order() {
        let mut last = 0;
        for v in (0..2_000_000u64).step_by(997) {
            let i = index(v);
            assert!(i >= last, "{v} went to bucket {i} after {last}");
            last = i;
        }
    }

    #[test]
    fn percentiles_match_the_exact_ones_within_precision() {
        // 1 ms .. 100 ms in 10 µs steps, shuffled order does not matter.
        let values: Vec<u64> = (1..=10_000u64).map(|i| i * 10_000).collect();
        let h = of(values.iter().copied().rev());
        let mut exact: Vec<Duration> = values.iter().map(|v| Duration::from_nanos(*v)).collect();
        let exact = Percentiles::of(&mut exact).expect("not empty");
        let got = h.percentiles().expect("not empty");
        for (name, want, got) in [
            ("p50", exact.p50, got.p50),
            ("p90", exact.p90, got.p90),
            ("p99", exact.p99, got.p99),
            ("p99.9", exact.p999, got.p999),
        ] {
            let error = (got.as_secs_f64() - want.as_secs_f64()).abs() / want.as_secs_f64();
            assert!(error < 0.005, "{name}: {got:?} for {want:?}");
        }
        assert_eq!(got.max, Duration::from_millis(100));
    }

    #[test]
    fn a_percentile_never_leaves_the_recorded_range() {
        let h = of([1_000_001, 1_000_002]);
        let p = h.percentiles().expect("not empty");
        assert!(p.p50 >= Duration::from_nanos(1_000_001) && p.p50 <= Duration::from_nanos(1_000_002));
        assert_eq!(p.max, Duration::from_nanos(1_000_002));
    }

    #[test]
    fn merged_equals_recorded_together() {
        let (a, b) = ((0..5_000u64).map(|v| v * 300), (0..3_000u64).map(|v| v * 7_000 + 11));
        let mut merged = of(a.clone());
        merged.merge(&of(b.clone()));
        merged.merge(&Histogram::default());
        let together = of(a.chain(b));
        assert_eq!(merged.len(), together.len());
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(merged.quantile(q), together.quantile(q), "q = {q}");
        }
        let mut empty = Histogram::default();
        empty.merge(&together);
        assert_eq!(
            empty.percentiles().map(|p| p.p99),
            together.percentiles().map(|p| p.p99)
        );
    }

    #[test]
    fn empty_has_no_percentiles() {
        assert!(Histogram::default().percentiles().is_none());
        assert!(Histogram::default().quantile(0.5).is_none());
    }
}
