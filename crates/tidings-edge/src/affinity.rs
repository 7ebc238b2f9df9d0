//! Member affinity: the routing key a load balancer hashes on, so that a member's
//! streams land on one edge and each of E edges needs about 1/E of the member
//! partitions (and receives about 1/E of the member traffic from NATS).
//!
//! The key is the member's live partition ([`tidings_domain::MemberId::partition`], the
//! number in its subjects), in decimal: a load balancer can hash on it without reading
//! the token, and every member of a partition hashes alike, which is what the node's
//! subscriptions are made of. The edge hands it out — the `tidings_affinity` cookie on
//! every authenticated stream and ticket response, `affinity` in `connected` and in the
//! ticket — and reads it back (`?affinity=`, else the cookie: the load balancer's own
//! order) only to count the keys that were wrong. It is a routing hint, never a
//! credential: the token decides the member, and a missing, malformed or stale key is
//! served like any other stream, answered with the right cookie so the next connect
//! lands where it should.

use axum::http::{HeaderMap, HeaderValue, header};

/// The cookie carrying the key.
pub(crate) const COOKIE: &str = "tidings_affinity";

/// The cookie's lifetime: a year. A member's partition changes only with the stream's
/// partition count, and a wrong key costs one misrouted connect.
const MAX_AGE_SECS: u64 = 365 * 24 * 3600;

/// What the request presented as its key: `?affinity=` when not empty, else the
/// cookie when not empty (the order deploy/nginx/tidings.conf hashes in).
pub(crate) fn presented<'a>(query: Option<&'a str>, headers: &'a HeaderMap) -> Option<&'a str> {
    query.filter(|k| !k.is_empty()).or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value.trim())
            .filter(|k| !k.is_empty())
    })
}

/// Whether a presented key differs from the member's `partition`: malformed, another
/// partition's, or another spelling of this one (`007`, `+7`), which a load balancer
/// hashes elsewhere. No key at all is no mismatch: the first connect has none.
pub(crate) fn mismatched(presented: Option<&str>, partition: u16) -> bool {
    presented.is_some_and(|key| key != key_of(partition))
}

/// The key of `partition`, as `connected` and the cookie carry it.
pub(crate) fn key_of(partition: u16) -> String {
    partition.to_string()
}

/// The `Set-Cookie` value handing out `partition`'s key. `Secure` when the client
/// reached us over https (as a TLS-terminating proxy tells, see [`is_https`]); a
/// browser refuses a `Secure` cookie from a plain http page, so it is not set there.
/// `HttpOnly`: scripts read the key from `connected` instead.
pub(crate) fn set_cookie(partition: u16, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = format!("{COOKIE}={partition}; Path=/; Max-Age={MAX_AGE_SECS}; SameSite=Lax; HttpOnly{secure}");
    HeaderValue::try_from(value).expect("invariant: digits and ASCII attributes")
}

/// Whether the request came over https to the proxy in front of this edge:
/// `X-Forwarded-Proto: https` (its first value, the client's side) or `Forwarded:
/// …proto=https`. The edge itself serves plain HTTP. A client that forges it only
/// marks its own cookie `Secure`.
pub(crate) fn is_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|first| {
            first.split(';').any(|pair| {
                pair.trim().split_once('=').is_some_and(|(k, v)| {
                    k.eq_ignore_ascii_case("proto") && v.trim_matches('"').eq_ignore_ascii_case("https")
                })
            })
        });
    forwarded_proto || forwarded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_query_wins_over_the_cookie_and_empty_values_count_as_none() {
        let h = headers(&[("cookie", "a=b; tidings_affinity=12; tidings_token=t")]);
        assert_eq!(presented(Some("7"), &h), Some("7"));
        assert_eq!(presented(None, &h), Some("12"));
        assert_eq!(presented(Some(""), &h), Some("12"), "an empty query falls through");
        assert_eq!(presented(None, &headers(&[("cookie", "tidings_affinity=")])), None);
        assert_eq!(presented(None, &HeaderMap::new()), None);
        // Cookies may come in several headers (HTTP/2 splits them).
        let split = headers(&[("cookie", "a=b"), ("cookie", "tidings_affinity=3")]);
        assert_eq!(presented(None, &split), Some("3"));
    }

    #[test]
    fn only_the_canonical_spelling_of_the_partition_matches() {
        assert!(!mismatched(None, 7), "no key is a first connect, not a mismatch");
        assert!(!mismatched(Some("7"), 7));
        assert!(!mismatched(Some("0"), 0));
        for wrong in ["8", "007", "+7", "7 ", "x", "-1", "65536", "७"] {
            assert!(mismatched(Some(wrong), 7), "{wrong:?}");
        }
    }

    #[test]
    fn the_cookie_is_lax_http_only_and_secure_only_over_https() {
        assert_eq!(
            set_cookie(517, false),
            "tidings_affinity=517; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly"
        );
        assert_eq!(
            set_cookie(0, true),
            "tidings_affinity=0; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly; Secure"
        );
        assert!(is_https(&headers(&[("x-forwarded-proto", "https")])));
        assert!(is_https(&headers(&[("x-forwarded-proto", "HTTPS, http")])));
        assert!(
            !is_https(&headers(&[("x-forwarded-proto", "http, https")])),
            "the client's side is first"
        );
        assert!(is_https(&headers(&[("forwarded", "for=1.2.3.4;proto=https;by=x")])));
        assert!(is_https(&headers(&[("forwarded", "Proto=\"https\"")])));
        assert!(!is_https(&headers(&[("forwarded", "proto=http, proto=https")])));
        assert!(!is_https(&HeaderMap::new()));
    }
}
