//! [`UnreadCount`]: a member's unread count with the version of their counter, as the
//! store returns it, the `Tidings-Unread` header carries it (`<count>;<version>`) and
//! edges compare it.
//!
//! The version grows by one for every unit the count moves (the store's `member_unread`
//! counter), so of two counts of one member, the one with the higher version is the
//! newer, whatever order they arrived in.

use std::fmt;

/// A member's unread count at one version of their counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnreadCount {
    pub count: u64,
    pub version: u64,
}

impl UnreadCount {
    /// Parses `<count>;<version>` (the header's form), both decimal; `None` for anything
    /// else, so a malformed header is as good as none.
    pub fn parse(s: &str) -> Option<Self> {
        let (count, version) = s.split_once(';')?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(count) || !digits(version) {
            return None;
        }
        Some(Self {
            count: count.parse().ok()?,
            version: version.parse().ok()?,
        })
    }

    /// Whether this count is newer than `shown`, the last one shown (or none yet).
    pub fn supersedes(&self, shown: Option<u64>) -> bool {
        shown.is_none_or(|v| self.version > v)
    }
}

impl fmt::Display for UnreadCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};{}", self.count, self.version)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_header_form_round_trips_and_anything_else_is_none() {
        let c = UnreadCount { count: 3, version: 17 };
        assert_eq!(c.to_string(), "3;17");
        assert_eq!(UnreadCount::parse("3;17"), Some(c));
        for bad in [
            "",
            "3",
            "3;",
            ";17",
            "3;17;1",
            "-3;17",
            "3; 17",
            "+3;17",
            "3;x",
            "99999999999999999999;1",
        ] {
            assert_eq!(UnreadCount::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_a_higher_version_supersedes() {
        let c = UnreadCount { count: 0, version: 9 };
        assert!(c.supersedes(None));
        assert!(c.supersedes(Some(8)));
        assert!(!c.supersedes(Some(9)), "the same version again is no news");
        assert!(!c.supersedes(Some(10)));
    }

    proptest! {
        #[test]
        fn any_count_round_trips(count: u64, version: u64) {
            let c = UnreadCount { count, version };
            prop_assert_eq!(UnreadCount::parse(&c.to_string()), Some(c));
        }
    }
}
