//! `GET /v1/stream`'s query string, read by hand: every connect carries its token in
//! it (`access_token`, a few hundred bytes), and a generic form decoder (percent
//! decoding byte by byte, three passes, a deserializer per field) took about 7,000
//! instructions a connect, 7 % of the edge's user-space work (BENCHMARKS.md, session
//! 14). A value without `%` or `+` — a JWT, a ticket, a topic list, an event
//! id — is copied as it is; any other is decoded as `application/x-www-form-urlencoded`
//! (`+` is a space, invalid UTF-8 becomes U+FFFD), as before.

use std::borrow::Cow;

use utoipa::IntoParams;

use crate::error::EdgeError;

/// `GET /v1/stream`'s query parameters. Unknown parameters are ignored; one given twice
/// is a 400 naming it.
#[derive(Debug, Default, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// The subscriber token, for clients that cannot set a header (prefer `ticket`: a
    /// URL is logged).
    pub(crate) access_token: Option<String>,
    /// A single-use ticket from `POST /v1/stream/ticket`.
    pub(crate) ticket: Option<String>,
    /// Comma-separated topics to join (at most 32); a stream of public topics only
    /// needs no credential.
    pub(crate) topics: Option<String>,
    /// Where to resume, for clients that cannot send the `Last-Event-ID` header.
    #[param(rename = "lastEventId")]
    pub(crate) last_event_id: Option<String>,
    /// The routing key the last `connected` event (or ticket) gave, for a load
    /// balancer to hash on (it wins over the `tidings_affinity` cookie). Never
    /// trusted: the credential decides the member, and a wrong key is served anyway.
    pub(crate) affinity: Option<String>,
}

impl StreamQuery {
    /// Reads the query string (`None`: the URL has none).
    pub(crate) fn parse(query: Option<&str>) -> Result<Self, EdgeError> {
        let mut parsed = Self::default();
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = decoded(pair);
            let slot = match name.as_ref() {
                "access_token" => &mut parsed.access_token,
                "ticket" => &mut parsed.ticket,
                "topics" => &mut parsed.topics,
                "lastEventId" => &mut parsed.last_event_id,
                "affinity" => &mut parsed.affinity,
                _ => continue,
            };
            if slot.is_some() {
                return Err(EdgeError::BadRequest(format!("query string: duplicate field `{name}`")));
            }
            *slot = Some(value.into_owned());
        }
        Ok(parsed)
    }
}

/// One `name=value` pair (no `&`), decoded; a pair without `=` has an empty value.
fn decoded(pair: &str) -> (Cow<'_, str>, Cow<'_, str>) {
    if pair.bytes().any(|b| b == b'%' || b == b'+') {
        return url::form_urlencoded::parse(pair.as_bytes()).next().unwrap_or_default();
    }
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    (Cow::Borrowed(name), Cow::Borrowed(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(query: &str) -> StreamQuery {
        StreamQuery::parse(Some(query)).expect("a good query string")
    }

    #[test]
    fn reads_each_parameter_as_the_form_encoding_does() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.sig-_";
        let q = parsed(&format!(
            "access_token={token}&ticket=t1&topics=a,b&lastEventId=3-7&affinity=517&other=x"
        ));
        assert_eq!(
            q,
            StreamQuery {
                access_token: Some(token.into()),
                ticket: Some("t1".into()),
                topics: Some("a,b".into()),
                last_event_id: Some("3-7".into()),
                affinity: Some("517".into()),
            }
        );
        // Percent-encoding, `+` as a space, an encoded name, a value holding `=`.
        let q = parsed("topics=a%2Cb+c&last%45ventId=x%3Dy&ticket=a=b");
        assert_eq!(q.topics.as_deref(), Some("a,b c"));
        assert_eq!(q.last_event_id.as_deref(), Some("x=y"));
        assert_eq!(q.ticket.as_deref(), Some("a=b"));
        // Invalid UTF-8 is replaced, as the form decoder does; empty pairs are skipped.
        let q = parsed("&&topics=%FF&affinity&");
        assert_eq!(q.topics.as_deref(), Some("\u{fffd}"));
        assert_eq!(q.affinity.as_deref(), Some(""));
        assert_eq!(StreamQuery::parse(None).unwrap(), StreamQuery::default());
        assert_eq!(parsed(""), StreamQuery::default());
    }

    #[test]
    fn a_parameter_given_twice_is_refused_by_name() {
        for (query, name) in [
            ("topics=a&topics=b", "topics"),
            ("lastEventId=1&last%45ventId=2", "lastEventId"),
            ("access_token=&access_token=x", "access_token"),
        ] {
            let Err(EdgeError::BadRequest(message)) = StreamQuery::parse(Some(query)) else {
                panic!("{query} accepted");
            };
            assert!(message.contains(name), "{query}: {message}");
        }
    }

    /// The hand-read parameters equal what the generic decoder read before.
    #[test]
    fn agrees_with_the_generic_form_decoder() {
        #[derive(serde::Deserialize)]
        struct Generic {
            access_token: Option<String>,
            ticket: Option<String>,
            topics: Option<String>,
            #[serde(rename = "lastEventId")]
            last_event_id: Option<String>,
            affinity: Option<String>,
        }
        for query in [
            "access_token=a.b.c&topics=x",
            "topics=%E2%9C%93+y&affinity=1",
            "ticket=%zz&lastEventId=%",
            "a=1&b&=&topics=",
            "topics=a%26b%3Dc",
        ] {
            let uri: axum::http::Uri = format!("/v1/stream?{query}").parse().expect("a uri");
            let axum::extract::Query(generic) = axum::extract::Query::<Generic>::try_from_uri(&uri).expect("decodes");
            let ours = parsed(query);
            assert_eq!(
                (
                    ours.access_token,
                    ours.ticket,
                    ours.topics,
                    ours.last_event_id,
                    ours.affinity
                ),
                (
                    generic.access_token,
                    generic.ticket,
                    generic.topics,
                    generic.last_event_id,
                    generic.affinity
                ),
                "{query}"
            );
        }
    }
}
