use std::fmt;

/// What a notification is about, e.g. `comment.created` or `order.shipped`.
///
/// 1..=128 bytes of `[A-Za-z0-9._:-]`, starting with a letter or digit: dotted names
/// that clients can switch on, never free text (that belongs in `content`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NotificationType(String);

/// Why a string is not a [`NotificationType`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationTypeError {
    #[error("type is empty")]
    Empty,
    #[error("type is {len} bytes long; at most {max} are allowed", max = NotificationType::MAX_LEN)]
    TooLong { len: usize },
    #[error("type must start with a letter or digit")]
    BadStart,
    #[error("type contains {found:?} at byte {at}; only A-Z, a-z, 0-9, '.', '_', ':' and '-' are allowed")]
    BadCharacter { found: char, at: usize },
}

impl NotificationType {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, NotificationTypeError> {
        let first = s.chars().next().ok_or(NotificationTypeError::Empty)?;
        if !first.is_ascii_alphanumeric() {
            return Err(NotificationTypeError::BadStart);
        }
        if let Some((at, found)) = s
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            return Err(NotificationTypeError::BadCharacter { found, at });
        }
        if s.len() > Self::MAX_LEN {
            return Err(NotificationTypeError::TooLong { len: s.len() });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NotificationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NotificationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dotted_names() {
        for s in ["comment.created", "order:shipped", "v2.ranking-updated_now", "7"] {
            assert!(NotificationType::parse(s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn rejects_free_text() {
        assert_eq!(NotificationType::parse(""), Err(NotificationTypeError::Empty));
        assert_eq!(NotificationType::parse(".x"), Err(NotificationTypeError::BadStart));
        assert_eq!(
            NotificationType::parse("new comment"),
            Err(NotificationTypeError::BadCharacter { found: ' ', at: 3 })
        );
        assert_eq!(
            NotificationType::parse(&"a".repeat(129)),
            Err(NotificationTypeError::TooLong { len: 129 })
        );
    }
}
