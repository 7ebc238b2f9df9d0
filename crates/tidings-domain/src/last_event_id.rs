use crate::EventId;

/// Where a connecting client says it left off: its `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastEventId {
    /// No id (or an empty one): a first connect.
    Fresh,
    From(EventId),
    /// Something that is not an id Tidings wrote: forged, truncated, not text. The
    /// client is told to reload (`reset`), never treated as fresh.
    Malformed,
}

impl LastEventId {
    /// A request's position: the `Last-Event-ID` header when present (what a browser
    /// sends on reconnect), else the `lastEventId` query parameter (a first connect).
    /// The header is taken as its raw bytes: HTTP lets a value carry any byte above
    /// 0x7F, and such a value is a malformed id, as the same value by query is, never a
    /// fresh connect that would silently skip what the client missed.
    pub fn of_request(header: Option<&[u8]>, query: Option<&str>) -> Self {
        match header {
            Some(raw) => std::str::from_utf8(raw).map_or(Self::Malformed, |id| Self::parse(Some(id))),
            None => Self::parse(query),
        }
    }

    /// One value, surrounding whitespace ignored.
    pub fn parse(raw: Option<&str>) -> Self {
        match raw.map(str::trim) {
            None | Some("") => Self::Fresh,
            Some(s) => EventId::parse(s).map_or(Self::Malformed, Self::From),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamEpoch;

    #[test]
    fn positions() {
        assert_eq!(LastEventId::parse(None), LastEventId::Fresh);
        assert_eq!(LastEventId::parse(Some(" ")), LastEventId::Fresh);
        assert_eq!(
            LastEventId::parse(Some("ab-12")),
            LastEventId::From(EventId::new(StreamEpoch(0xab), 12))
        );
        for forged in ["12", "ab-01", "<script>", "ab-1; drop table", "ab-99999999999999999999"] {
            assert_eq!(LastEventId::parse(Some(forged)), LastEventId::Malformed, "{forged}");
        }
    }

    #[test]
    fn a_header_that_is_not_text_is_malformed() {
        let ab12 = LastEventId::From(EventId::new(StreamEpoch(0xab), 12));
        // The header wins when present; the query parameter serves a first connect.
        assert_eq!(LastEventId::of_request(Some(b"ab-12".as_slice()), Some("cd-1")), ab12);
        assert_eq!(LastEventId::of_request(None, Some("ab-12")), ab12);
        assert_eq!(LastEventId::of_request(None, None), LastEventId::Fresh);
        assert_eq!(
            LastEventId::of_request(Some(b"".as_slice()), Some("ab-12")),
            LastEventId::Fresh
        );
        // UTF-8, Latin-1, a stray byte: malformed, as the same value by query is.
        for raw in [&b"\xc3\xa9"[..], b"\xe9", b"ab-12\xff"] {
            assert_eq!(
                LastEventId::of_request(Some(raw), Some("ab-12")),
                LastEventId::Malformed,
                "{raw:?}"
            );
            let by_query = String::from_utf8_lossy(raw);
            assert_eq!(
                LastEventId::of_request(None, Some(&by_query)),
                LastEventId::Malformed,
                "{raw:?}"
            );
        }
    }
}
