use std::fmt;
use std::str::FromStr;

/// One incarnation of the JetStream stream.
///
/// Derived from the stream's creation time, which survives updates, restarts and leader
/// changes but differs when the stream is deleted and created again. Sequences of two
/// incarnations are unrelated, so an [`EventId`] from another epoch is never replayed
/// from: the client gets a `reset` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamEpoch(pub u64);

/// The SSE `id:` of an event: a stream sequence within one stream incarnation.
///
/// The text form is `<epoch as lowercase hex>-<sequence in decimal>`, e.g.
/// `18a3f0c2b1d4e5f6-1042`. Clients treat it as opaque. Parsing accepts exactly the
/// strings [`Display`](fmt::Display) produces (no signs, no leading zeros, no spaces),
/// so every id has one spelling and a forged or truncated `Last-Event-ID` is rejected,
/// never misread. Sequence 0 means "before the first message" and is what a fresh
/// connection's `connected` event carries when the stream is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId {
    pub epoch: StreamEpoch,
    pub seq: u64,
}

/// Why a string is not an [`EventId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventIdError {
    #[error("event id is longer than {max} bytes", max = EventId::MAX_LEN)]
    TooLong,
    #[error("event id has no '-' between epoch and sequence")]
    NoSeparator,
    #[error("event id epoch is not canonical lowercase hex of at most 16 digits")]
    BadEpoch,
    #[error("event id sequence is not a canonical decimal u64")]
    BadSequence,
}

impl EventId {
    /// 16 hex digits, a dash and 20 decimal digits.
    pub const MAX_LEN: usize = 37;

    pub fn new(epoch: StreamEpoch, seq: u64) -> Self {
        Self { epoch, seq }
    }

    pub fn parse(s: &str) -> Result<Self, EventIdError> {
        if s.len() > Self::MAX_LEN {
            return Err(EventIdError::TooLong);
        }
        let (epoch, seq) = s.split_once('-').ok_or(EventIdError::NoSeparator)?;
        let epoch = canonical_digits(epoch, 16, |b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            .and_then(|d| u64::from_str_radix(d, 16).ok())
            .ok_or(EventIdError::BadEpoch)?;
        let seq = canonical_digits(seq, 20, |b| b.is_ascii_digit())
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or(EventIdError::BadSequence)?;
        Ok(Self {
            epoch: StreamEpoch(epoch),
            seq,
        })
    }
}

/// `s` if it is 1..=`max` digits of the given alphabet without a leading zero.
fn canonical_digits(s: &str, max: usize, digit: impl Fn(u8) -> bool) -> Option<&str> {
    let ok = !s.is_empty() && s.len() <= max && s.bytes().all(digit) && (s == "0" || !s.starts_with('0'));
    ok.then_some(s)
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{}", self.epoch.0, self.seq)
    }
}

impl FromStr for EventId {
    type Err = EventIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn formats_as_hex_epoch_and_decimal_sequence() {
        let id = EventId::new(StreamEpoch(0x18a3_f0c2_b1d4_e5f6), 1042);
        assert_eq!(id.to_string(), "18a3f0c2b1d4e5f6-1042");
        assert_eq!(EventId::parse("18a3f0c2b1d4e5f6-1042"), Ok(id));
        assert_eq!(EventId::parse("0-0"), Ok(EventId::new(StreamEpoch(0), 0)));
        let max = EventId::new(StreamEpoch(u64::MAX), u64::MAX);
        assert_eq!(max.to_string().len(), EventId::MAX_LEN);
        assert_eq!(EventId::parse(&max.to_string()), Ok(max));
    }

    #[test]
    fn rejects_every_non_canonical_spelling() {
        use EventIdError::*;
        let cases = [
            ("", NoSeparator),
            ("1042", NoSeparator),
            ("-1", BadEpoch),
            ("ab-", BadSequence),
            ("AB-1", BadEpoch),
            ("0ab-1", BadEpoch),
            ("ab-01", BadSequence),
            ("ab-+1", BadSequence),
            ("ab--1", BadSequence),
            ("ab-1-2", BadSequence),
            (" ab-1", BadEpoch),
            ("ab-1 ", BadSequence),
            ("ab-18446744073709551616", BadSequence),
            ("10000000000000000-1", BadEpoch),
            ("ab-1\n", BadSequence),
            ("ab-١", BadSequence),
        ];
        for (s, want) in cases {
            assert_eq!(EventId::parse(s), Err(want), "{s:?}");
        }
        assert_eq!(EventId::parse(&"9".repeat(1 << 20)), Err(TooLong));
    }

    proptest! {
        #[test]
        fn round_trips(epoch in any::<u64>(), seq in any::<u64>()) {
            let id = EventId::new(StreamEpoch(epoch), seq);
            prop_assert_eq!(EventId::parse(&id.to_string()), Ok(id));
        }

        #[test]
        fn parse_never_panics_and_accepts_only_canonical(s in "\\PC{0,48}|[0-9a-fA-F+ -]{0,40}") {
            if let Ok(id) = EventId::parse(&s) {
                prop_assert_eq!(id.to_string(), s);
            }
        }

        #[test]
        fn distinct_ids_have_distinct_text(a in any::<(u64, u64)>(), b in any::<(u64, u64)>()) {
            let (x, y) = (EventId::new(StreamEpoch(a.0), a.1), EventId::new(StreamEpoch(b.0), b.1));
            prop_assert_eq!(x == y, x.to_string() == y.to_string());
        }
    }
}
