//! `Last-Event-ID` as a browser (or an attacker) sends it, by header bytes or by query:
//! never a panic; an id is accepted only in the one spelling Tidings writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_domain::{EventId, LastEventId};

fuzz_target!(|raw: &[u8]| {
    let by_header = LastEventId::of_request(Some(raw), None);
    if let Ok(text) = std::str::from_utf8(raw) {
        if let Ok(id) = EventId::parse(text) {
            assert_eq!(id.to_string(), text, "only the canonical spelling parses");
        }
        assert_eq!(
            by_header,
            LastEventId::of_request(None, Some(text)),
            "header and query agree"
        );
        if let LastEventId::From(id) = &by_header {
            assert_eq!(id.to_string(), text.trim());
        }
    } else {
        assert_eq!(
            by_header,
            LastEventId::Malformed,
            "bytes that are not text are malformed"
        );
    }
});
