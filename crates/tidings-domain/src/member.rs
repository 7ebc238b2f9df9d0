use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A member: the recipient of notifications and the `sub` of a subscriber token.
///
/// Any UTF-8 string of 1..=256 bytes without control characters. Control characters are
/// refused because Postgres `text` cannot hold NUL and no real identifier needs them; all
/// other characters, including `.`, `*`, `>` and spaces, are legal and harmless because a
/// member id never reaches a NATS subject directly, only through [`SubjectToken`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(String);

/// Why a string is not a [`MemberId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberIdError {
    #[error("member id is empty")]
    Empty,
    #[error("member id is {len} bytes long; at most {max} bytes are allowed", max = MemberId::MAX_LEN)]
    TooLong { len: usize },
    #[error("member id contains a control character at byte {at}")]
    ControlCharacter { at: usize },
}

impl MemberId {
    /// Longest member id, in bytes of UTF-8.
    pub const MAX_LEN: usize = 256;

    pub fn parse(s: &str) -> Result<Self, MemberIdError> {
        if s.is_empty() {
            return Err(MemberIdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(MemberIdError::TooLong { len: s.len() });
        }
        if let Some((at, _)) = s.char_indices().find(|(_, c)| c.is_control()) {
            return Err(MemberIdError::ControlCharacter { at });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The live-delivery partition of this member among `partitions` (FNV-1a 32 of the
    /// id's bytes, modulo). Edges take NATS interest per partition, and a load balancer
    /// that hashes on the same key sends each partition to one edge. The function is
    /// part of the subject grammar: it must never change for an existing stream.
    pub fn partition(&self, partitions: u16) -> u16 {
        let hash = self
            .0
            .bytes()
            .fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        u16::try_from(hash % u32::from(partitions.max(1))).expect("invariant: below a u16 modulus")
    }

    /// The token that stands for this member in NATS subjects.
    pub fn subject_token(&self) -> SubjectToken {
        SubjectToken(URL_SAFE_NO_PAD.encode(self.0.as_bytes()))
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A member id encoded for use as one NATS subject token.
///
/// The encoding is unpadded base64url of the id's UTF-8 bytes: injective (two ids never
/// share a token), reversible, and drawn only from `[A-Za-z0-9_-]`, so it can never be
/// `.`, `*`, `>` or white space and can never widen a subscription.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectToken(String);

/// Why a subject token does not decode to a member id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectTokenError {
    #[error("subject token is not unpadded base64url")]
    NotBase64,
    #[error("subject token does not decode to UTF-8")]
    NotUtf8,
    #[error("subject token does not decode to a valid member id: {0}")]
    Member(#[from] MemberIdError),
}

impl SubjectToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Decodes a token read back from a subject. Only the canonical encoding is
    /// accepted, so `decode(t).subject_token() == t` for every token that decodes.
    pub fn decode(token: &str) -> Result<MemberId, SubjectTokenError> {
        // The longest valid token encodes MAX_LEN bytes; refuse more before allocating.
        if token.len() > (MemberId::MAX_LEN * 4).div_ceil(3) {
            return Err(MemberIdError::TooLong {
                len: token.len() * 3 / 4,
            }
            .into());
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| SubjectTokenError::NotBase64)?;
        let text = String::from_utf8(bytes).map_err(|_| SubjectTokenError::NotUtf8)?;
        let member = MemberId::parse(&text)?;
        if member.subject_token().0 != token {
            // base64 can carry stray low bits in the last character; such a token is
            // not one we produced.
            return Err(SubjectTokenError::NotBase64);
        }
        Ok(member)
    }
}

impl fmt::Display for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn member_id() -> impl Strategy<Value = MemberId> {
        // Any printable text, including the characters NATS treats specially.
        "[^\\p{Cc}]{1,64}|[.*> \t]{1,8}|\\PC{1,80}".prop_filter_map("fits a member id", |s| MemberId::parse(&s).ok())
    }

    #[test]
    fn accepts_nats_special_characters_and_unicode() {
        for s in ["a.b", "*", ">", "a b", "회원-42", "🙂", &"x".repeat(256)] {
            assert!(MemberId::parse(s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn rejects_empty_long_and_control_characters() {
        assert_eq!(MemberId::parse(""), Err(MemberIdError::Empty));
        assert_eq!(
            MemberId::parse(&"x".repeat(257)),
            Err(MemberIdError::TooLong { len: 257 })
        );
        assert_eq!(MemberId::parse("ab\0c"), Err(MemberIdError::ControlCharacter { at: 2 }));
        assert!(MemberId::parse("a\nb").is_err());
        assert!(MemberId::parse("a\u{7f}").is_err());
        // 256 bytes is the limit in bytes, not characters: 86 three-byte chars = 258 bytes.
        assert!(MemberId::parse(&"회".repeat(86)).is_err());
    }

    #[test]
    fn partitions_are_stable_fnv1a() {
        // Pinned values: changing the function would move every member's subject.
        assert_eq!(
            MemberId::parse("a").unwrap().partition(u16::MAX),
            (0xe40c_292c_u32 % 65535) as u16
        );
        assert_eq!(
            MemberId::parse("alice").unwrap().partition(1024),
            (0x8722_13e7_u32 % 1024) as u16
        );
        assert_eq!(MemberId::parse("x").unwrap().partition(1), 0);
    }

    #[test]
    fn token_decode_rejects_foreign_tokens() {
        assert_eq!(SubjectToken::decode("a.b"), Err(SubjectTokenError::NotBase64));
        assert_eq!(SubjectToken::decode("YQ=="), Err(SubjectTokenError::NotBase64));
        // "YR" carries stray bits in its last character; "YQ" is the canonical "a".
        assert_eq!(SubjectToken::decode("YR"), Err(SubjectTokenError::NotBase64));
        assert_eq!(SubjectToken::decode("YQ").map(|m| m.0), Ok("a".into()));
        assert_eq!(SubjectToken::decode("_w"), Err(SubjectTokenError::NotUtf8));
        assert!(SubjectToken::decode("").is_err());
        assert!(SubjectToken::decode(&"Q".repeat(10_000)).is_err());
    }

    proptest! {
        #[test]
        fn token_never_contains_subject_syntax(m in member_id()) {
            let token = m.subject_token();
            prop_assert!(!token.as_str().is_empty());
            prop_assert!(token.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "token {token:?}");
        }

        #[test]
        fn partitions_are_in_range(m in member_id(), n in 1u16..) {
            prop_assert!(m.partition(n) < n);
        }

        #[test]
        fn token_round_trips(m in member_id()) {
            prop_assert_eq!(SubjectToken::decode(m.subject_token().as_str()), Ok(m));
        }

        #[test]
        fn token_is_injective(a in member_id(), b in member_id()) {
            prop_assert_eq!(a == b, a.subject_token() == b.subject_token());
        }

        #[test]
        fn decode_never_panics_and_accepts_only_canonical(s in "\\PC{0,400}") {
            if let Ok(m) = SubjectToken::decode(&s) {
                prop_assert_eq!(m.subject_token().to_string(), s);
            }
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            if let Ok(m) = MemberId::parse(&s) {
                prop_assert_eq!(m.as_str(), s.as_str());
            }
        }
    }
}
