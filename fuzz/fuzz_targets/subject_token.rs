//! Member ids and topic names become NATS subject tokens: a token is never a wildcard,
//! separator or blank, and decodes back to exactly the member it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_domain::{MemberId, SubjectToken, Topic};

fuzz_target!(|text: &str| {
    if let Ok(member) = MemberId::parse(text) {
        let token = member.subject_token();
        let token = token.as_str();
        assert!(!token.is_empty());
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{token}"
        );
        assert_eq!(SubjectToken::decode(token).as_ref(), Ok(&member));
    }
    // Whatever a subject carries back: only canonical tokens decode, to their member.
    if let Ok(member) = SubjectToken::decode(text) {
        assert_eq!(member.subject_token().as_str(), text);
    }
    if let Ok(topic) = Topic::parse(text) {
        let token = topic.subject_token();
        assert!(!token.is_empty() && !token.contains(['.', '*', '>', ' ']), "{token}");
    }
});
