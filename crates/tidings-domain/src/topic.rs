use std::fmt;

/// A broadcast topic, e.g. a ranking board every viewer follows.
///
/// Matches `[A-Za-z0-9_-]{1,64}`. That alphabet is already safe inside a NATS subject,
/// so the topic name is its own subject token: readable in `nats` tooling, and still
/// unable to contain `.`, `*`, `>` or white space.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(String);

/// Why a string is not a [`Topic`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is {len} bytes long; at most {max} are allowed", max = Topic::MAX_LEN)]
    TooLong { len: usize },
    #[error("topic contains {found:?} at byte {at}; only A-Z, a-z, 0-9, '_' and '-' are allowed")]
    BadCharacter { found: char, at: usize },
}

impl Topic {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, TopicError> {
        if s.is_empty() {
            return Err(TopicError::Empty);
        }
        if let Some((at, found)) = s
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(TopicError::BadCharacter { found, at });
        }
        if s.len() > Self::MAX_LEN {
            return Err(TopicError::TooLong { len: s.len() });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token that stands for this topic in NATS subjects (the name itself).
    pub fn subject_token(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for s in ["ranking", "Ranking-2026_w47", "a", &"z".repeat(64)] {
            assert!(Topic::parse(s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn rejects_subject_syntax_and_length() {
        assert_eq!(Topic::parse(""), Err(TopicError::Empty));
        assert_eq!(Topic::parse(&"z".repeat(65)), Err(TopicError::TooLong { len: 65 }));
        for (s, found, at) in [
            ("a.b", '.', 1),
            ("*", '*', 0),
            ("x>", '>', 1),
            ("a b", ' ', 1),
            ("é", 'é', 0),
        ] {
            assert_eq!(Topic::parse(s), Err(TopicError::BadCharacter { found, at }));
        }
    }

    proptest! {
        #[test]
        fn valid_iff_matches_pattern(s in "\\PC{0,70}|[A-Za-z0-9_-]{0,70}") {
            let valid = !s.is_empty() && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            prop_assert_eq!(Topic::parse(&s).is_ok(), valid);
        }
    }
}
