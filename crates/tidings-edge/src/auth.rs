//! Subscriber authentication: a JWT whose `sub` is the member, from the `Authorization`
//! header, the `tidings_token` cookie, the `access_token` query parameter, or a
//! single-use `ticket` (redeemed through the bus, so any edge accepts it once).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tidings_bus::Tickets;
use tidings_domain::{ConfigError, MemberId, Topic};

use crate::hs256::{self, Hs256};

/// The cookie a browser may carry its token in.
pub const COOKIE: &str = "tidings_token";

/// Claims Tidings reads from a subscriber token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The member id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch. Required.
    pub exp: u64,
    /// Topics the token may join; absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
}

/// An authenticated subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub member: MemberId,
    pub topics: Vec<Topic>,
    /// When the token expires; the stream ends then.
    pub expires_at: SystemTime,
}

impl Subscriber {
    pub fn may_join(&self, topic: &Topic) -> bool {
        self.topics.contains(topic)
    }
}

/// Why a request is not authenticated; the message goes to the client in a 401 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token: send Authorization: Bearer <token>, the tidings_token cookie, ?access_token= or ?ticket=")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not yet valid (nbf)")]
    NotYetValid,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the ticket is unknown, expired or already used")]
    BadTicket,
    /// The ticket store cannot be reached: not the client's fault (503, not 401).
    #[error("stream tickets are unavailable: {0}")]
    TicketsUnavailable(String),
}

/// Checks subscriber tokens against the configured key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Set when tokens can also be minted here (HS256): `tidings token`, dev mode.
    signer: Option<EncodingKey>,
    /// HS256 tokens are checked by `hs256.rs`, not by jsonwebtoken (same verdicts, a
    /// fraction of the work).
    hs256: Option<Hs256>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            key: DecodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256),
            signer: Some(EncodingKey::from_secret(secret)),
            hs256: Hs256::new(secret),
        }
    }

    /// A verifier for the public key in a PEM file: RSA (RS256), P-256 (ES256) or
    /// Ed25519 (EdDSA), recognised from the key itself.
    pub fn from_public_key_file(path: &Path) -> Result<Self, ConfigError> {
        let err = |why: String| ConfigError::new("TIDINGS_JWT_PUBLIC_KEY", why);
        let pem = std::fs::read(path).map_err(|e| err(format!("cannot read {} ({e})", path.display())))?;
        let (key, algorithm) = if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
            (k, Algorithm::EdDSA)
        } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
            (k, Algorithm::ES256)
        } else if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
            (k, Algorithm::RS256)
        } else {
            return Err(err(format!(
                "{} holds no RSA, P-256 or Ed25519 public key in PEM",
                path.display()
            )));
        };
        Ok(Self {
            key,
            validation: validation(algorithm),
            signer: None,
            hs256: None,
        })
    }

    /// Verifies a token: signature, algorithm, `exp` (no leeway), `nbf` when present
    /// (with `NBF_LEEWAY` for clock skew), and a valid member id.
    pub fn verify(&self, token: &str) -> Result<Subscriber, AuthError> {
        let claims = match &self.hs256 {
            Some(hs256) => match hs256.verify(token, now_secs(), NBF_LEEWAY.as_secs()) {
                Ok(c) => Claims {
                    sub: c.sub,
                    exp: c.exp,
                    topics: c.topics,
                },
                Err(hs256::Refused::Invalid(why)) => return Err(AuthError::Invalid(why)),
                Err(hs256::Refused::NotYetValid) => return Err(AuthError::NotYetValid),
            },
            None => self.verify_by_library(token)?,
        };
        subscriber(claims)
    }

    /// jsonwebtoken's check: the public-key algorithms, and the reference the HS256
    /// check is compared with.
    fn verify_by_library(&self, token: &str) -> Result<Claims, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            other => AuthError::Invalid(format!("{other:?}").to_lowercase()),
        })?;
        Ok(data.claims)
    }

    /// Signs a token for `claims`, usually [`Claims`]; tests sign hand-made claim sets
    /// (HS256 only: a public key cannot sign).
    pub fn sign(&self, claims: &impl Serialize) -> Option<String> {
        let signer = self.signer.as_ref()?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, signer).ok()
    }
}

/// Turns verified claims into a subscriber, refusing bad member ids and topic names, and
/// an `exp` past what the system clock can represent (from 2^63 s on Unix): a signed
/// token may carry any u64, and adding it to the epoch unchecked panics the request.
pub(crate) fn subscriber(claims: Claims) -> Result<Subscriber, AuthError> {
    let member = MemberId::parse(&claims.sub).map_err(|e| AuthError::Invalid(format!("sub: {e}")))?;
    let topics = claims
        .topics
        .unwrap_or_default()
        .iter()
        .map(|t| Topic::parse(t).map_err(|e| AuthError::Invalid(format!("topics: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let expires_at = UNIX_EPOCH
        .checked_add(Duration::from_secs(claims.exp))
        .ok_or_else(|| AuthError::Invalid("exp: out of range".into()))?;
    if expires_at <= SystemTime::now() {
        return Err(AuthError::Expired);
    }
    Ok(Subscriber {
        member,
        topics,
        expires_at,
    })
}

/// How far ahead of this node's clock a token's `nbf` may be: an issuer minting tokens
/// with `nbf` = now on a clock slightly ahead would otherwise see fresh tokens refused
/// until this node's clock catches up (and a browser's EventSource gives up on a 401).
pub(crate) const NBF_LEEWAY: Duration = Duration::from_secs(30);

/// `leeway` is `NBF_LEEWAY`: jsonwebtoken applies it to `exp` as well, but
/// `subscriber` checks `exp` again exactly, and the sweep ends the stream then.
fn validation(algorithm: Algorithm) -> Validation {
    let mut v = Validation::new(algorithm);
    v.leeway = NBF_LEEWAY.as_secs();
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "sub"]);
    v.validate_aud = false;
    v
}

/// Where a request's credential came from (borrowed from the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential<'a> {
    Token(&'a str),
    Ticket(&'a str),
}

/// Finds the credential: `Authorization: Bearer`, then the cookie, then `access_token`,
/// then `ticket`.
pub(crate) fn credential<'a>(
    headers: &'a HeaderMap,
    access_token: Option<&'a str>,
    ticket: Option<&'a str>,
) -> Option<Credential<'a>> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let cookie = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim());
    bearer
        .or(cookie)
        .or(access_token)
        .filter(|t| !t.is_empty())
        .map(Credential::Token)
        .or_else(|| ticket.filter(|t| !t.is_empty()).map(Credential::Ticket))
}

/// Authenticates a request from its token (header, cookie, `access_token`) or its
/// single-use ticket, which is redeemed here.
pub(crate) async fn authenticate(
    verifier: &Verifier,
    tickets: &Tickets,
    headers: &HeaderMap,
    access_token: Option<&str>,
    ticket: Option<&str>,
) -> Result<Subscriber, AuthError> {
    match credential(headers, access_token, ticket) {
        None => Err(AuthError::Missing),
        Some(Credential::Token(token)) => verifier.verify(token),
        Some(Credential::Ticket(id)) => {
            // Boxed: the redemption's future (a NATS round trip, ~6 KB) would otherwise
            // sit inside every request's future, tokens and tickets alike, and be
            // allocated and copied with each.
            let value = Box::pin(tickets.redeem(id))
                .await
                .map_err(|e| AuthError::TicketsUnavailable(e.to_string()))?
                .ok_or(AuthError::BadTicket)?;
            let claims: Claims = serde_json::from_slice(&value).map_err(|_| AuthError::BadTicket)?;
            subscriber(claims)
        }
    }
}

/// Seconds since the Unix epoch, now.
fn now_secs() -> u64 {
    expiry_in(Duration::ZERO)
}

/// Seconds since the Unix epoch, `ttl` from now (saturating: a huge `ttl` gives
/// `u64::MAX`, which [`Verifier::verify`] refuses as out of range).
pub fn expiry_in(ttl: Duration) -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .saturating_add(ttl.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims(sub: &str, ttl: Duration) -> Claims {
        Claims {
            sub: sub.into(),
            exp: expiry_in(ttl),
            topics: Some(vec!["ranking".into()]),
        }
    }

    #[test]
    fn hs256_round_trip_and_rejections() {
        let v = Verifier::hs256(SECRET);
        let token = v.sign(&claims("alice", Duration::from_secs(60))).unwrap();
        let s = v.verify(&token).unwrap();
        assert_eq!(s.member.as_str(), "alice");
        assert!(s.may_join(&Topic::parse("ranking").unwrap()));
        assert!(!s.may_join(&Topic::parse("other").unwrap()));

        let other = Verifier::hs256(b"another-secret-another-secret-12");
        assert_eq!(
            other.verify(&token),
            Err(AuthError::Invalid("signature: does not match".into())),
            "a refusal says why"
        );
        let expired = v
            .sign(&Claims {
                exp: expiry_in(Duration::ZERO) - 10,
                ..claims("a", Duration::ZERO)
            })
            .unwrap();
        assert_eq!(v.verify(&expired), Err(AuthError::Expired));
        let bad_member = v.sign(&claims("", Duration::from_secs(60))).unwrap();
        assert!(matches!(v.verify(&bad_member), Err(AuthError::Invalid(m)) if m.starts_with("sub")));
        for garbage in ["", "abc", "a.b.c", &format!("{token}x")] {
            assert!(v.verify(garbage).is_err(), "{garbage}");
        }
        // The classic downgrade: a token claiming alg=none is refused.
        let none = format!("eyJhbGciOiJub25lIn0.{}.", token.split('.').nth(1).unwrap());
        assert!(v.verify(&none).is_err());
    }

    #[test]
    fn an_exp_beyond_what_the_clock_can_hold_is_invalid_not_a_panic() {
        let v = Verifier::hs256(SECRET);
        for exp in [u64::MAX, u64::MAX - 1, 1 << 63] {
            let token = v.sign(&serde_json::json!({ "sub": "a", "exp": exp })).unwrap();
            assert!(
                matches!(v.verify(&token), Err(AuthError::Invalid(m)) if m.contains("exp")),
                "{exp}"
            );
            // The same claims redeemed from a ticket.
            let claims = Claims {
                sub: "a".into(),
                exp,
                topics: None,
            };
            assert!(matches!(subscriber(claims), Err(AuthError::Invalid(_))), "{exp}");
        }
        // Far off but representable (the year 5138): valid.
        let far = v
            .sign(&serde_json::json!({ "sub": "a", "exp": 100_000_000_000u64 }))
            .unwrap();
        assert_eq!(v.verify(&far).unwrap().member.as_str(), "a");
        assert_eq!(expiry_in(Duration::MAX), u64::MAX, "a huge ttl saturates");
    }

    #[test]
    fn nbf_is_enforced_with_leeway_for_clock_skew_only() {
        let v = Verifier::hs256(SECRET);
        let now = expiry_in(Duration::ZERO);
        let with_nbf = |nbf: serde_json::Value| {
            v.sign(&serde_json::json!({ "sub": "a", "exp": now + 7200, "nbf": nbf }))
                .unwrap()
        };
        let early = v.verify(&with_nbf((now + 3600).into())).unwrap_err();
        assert!(early.to_string().contains("not yet valid"), "{early}");
        assert!(v.verify(&with_nbf((now - 60).into())).is_ok(), "nbf in the past");
        assert!(
            v.verify(&with_nbf((now + 5).into())).is_ok(),
            "an issuer's clock a few seconds ahead"
        );
        for malformed in [serde_json::json!("soon"), serde_json::json!(-1)] {
            assert!(v.verify(&with_nbf(malformed.clone())).is_err(), "{malformed}");
        }
        // `exp` has no leeway: a token that expired a second ago is refused.
        let expired = v.sign(&serde_json::json!({ "sub": "a", "exp": now - 1 })).unwrap();
        assert_eq!(v.verify(&expired), Err(AuthError::Expired));
    }

    /// A token from raw parts: `header` and `claims` as JSON text, signed with HS256
    /// under `key` (any bytes), or with the given signature text.
    fn forged(header: &str, claims: &str, key: &[u8]) -> String {
        use base64::Engine as _;
        use hmac::Mac as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signed = format!("{}.{}", b64.encode(header), b64.encode(claims));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(signed.as_bytes());
        format!("{signed}.{}", b64.encode(mac.finalize().into_bytes()))
    }

    /// The edge's own HS256 check accepts exactly what jsonwebtoken accepts, with the
    /// same claims, and refuses for the same kind of reason.
    #[test]
    fn the_hs256_check_gives_jsonwebtokens_verdicts() {
        let v = Verifier::hs256(SECRET);
        let now = expiry_in(Duration::ZERO);
        let hs = r#"{"alg":"HS256","typ":"JWT"}"#;
        let good = format!(r#"{{"sub":"ann","exp":{}}}"#, now + 600);
        let signed = |claims: serde_json::Value| v.sign(&claims).unwrap();
        let other_alg = |algorithm| {
            jsonwebtoken::encode(
                &Header::new(algorithm),
                &claims("ann", Duration::from_secs(60)),
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap()
        };
        let valid = v.sign(&claims("ann", Duration::from_secs(60))).unwrap();
        let (head, rest) = valid.split_once('.').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        let tokens = vec![
            valid.clone(),
            forged(hs, &good, SECRET),
            forged(r#"{"alg":"HS256"}"#, &good, SECRET),
            forged(r#"{"typ":"JWT","alg":"HS256","kid":"k1","x":[1]}"#, &good, SECRET),
            forged(
                hs,
                &format!(
                    r#"{{"sub":"ann","exp":{},"topics":["a","b"],"iat":1,"extra":{{"x":1}}}}"#,
                    now + 600
                ),
                SECRET,
            ),
            forged(
                hs,
                &format!(r#"{{"sub":"ann","exp":{},"topics":null}}"#, now + 600),
                SECRET,
            ),
            forged(hs, &good, b"another-secret-another-secret-12"),
            forged(r#"{"alg":"none"}"#, &good, SECRET),
            forged(r#"{"alg":"HS384"}"#, &good, SECRET),
            forged(r#"{"alg":"hs256"}"#, &good, SECRET),
            forged(r#"{"typ":"JWT"}"#, &good, SECRET),
            forged(r#"["HS256"]"#, &good, SECRET),
            forged("not json", &good, SECRET),
            forged(hs, "not json", SECRET),
            forged(hs, &format!(r#"["ann",{}]"#, now + 600), SECRET),
            forged(hs, &format!(r#" {{"sub":"ann","exp":{}}}"#, now + 600), SECRET),
            forged(hs, r#"{"sub":"ann"}"#, SECRET),
            forged(hs, &format!(r#"{{"exp":{}}}"#, now + 600), SECRET),
            forged(hs, &format!(r#"{{"sub":"ann","exp":"{}"}}"#, now + 600), SECRET),
            forged(hs, &format!(r#"{{"sub":"ann","exp":{}.5}}"#, now + 600), SECRET),
            forged(hs, &format!(r#"{{"sub":7,"exp":{}}}"#, now + 600), SECRET),
            forged(
                hs,
                &format!(r#"{{"sub":"ann","exp":{},"topics":"a"}}"#, now + 600),
                SECRET,
            ),
            forged(hs, &format!(r#"{{"sub":"ann","exp":{}}}"#, now - 5), SECRET),
            forged(hs, &format!(r#"{{"sub":"ann","exp":{}}}"#, now - 600), SECRET),
            forged(
                hs,
                &format!(r#"{{"sub":"ann","exp":{},"nbf":{}}}"#, now + 7200, now + 3600),
                SECRET,
            ),
            forged(
                hs,
                &format!(r#"{{"sub":"ann","exp":{},"nbf":{}}}"#, now + 7200, now + 5),
                SECRET,
            ),
            forged(
                hs,
                &format!(r#"{{"sub":"ann","exp":{},"nbf":{}}}"#, now + 7200, now - 60),
                SECRET,
            ),
            forged(
                hs,
                &format!(r#"{{"sub":"ann","exp":{},"nbf":"soon"}}"#, now + 7200),
                SECRET,
            ),
            forged(hs, &format!(r#"{{"sub":"","exp":{}}}"#, now + 600), SECRET),
            signed(serde_json::json!({ "sub": "ann", "exp": u64::MAX })),
            other_alg(Algorithm::HS384),
            other_alg(Algorithm::HS512),
            format!("{head}.{payload}x.{signature}"),
            format!("{head}.{payload}.{signature}x"),
            format!("{head}.{payload}.{signature}="),
            format!("{head}.{payload}.{}", &signature[1..]),
            format!("{head}.{payload}."),
            format!("{head}.{payload}"),
            format!("{head}.{payload}.{signature}.{signature}"),
            format!("{head}=.{payload}.{signature}"),
            format!(" {valid}"),
            format!("{head}.{payload}.{}", "A".repeat(400)),
            String::new(),
            "...".into(),
        ];
        for token in &tokens {
            let ours = v.verify(token);
            let library = v.verify_by_library(token).and_then(subscriber);
            match (&ours, &library) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{token}"),
                (Err(AuthError::Invalid(_)), Err(AuthError::Invalid(_))) => {}
                (a, b) => assert_eq!(a, b, "{token}"),
            }
        }
        assert!(
            tokens.iter().filter(|t| v.verify(t).is_ok()).count() >= 8,
            "the corpus holds good tokens"
        );
    }

    #[test]
    fn asymmetric_keys_are_recognised_from_the_pem() {
        let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
        for (name, algorithm) in [("ed25519", Algorithm::EdDSA), ("p256", Algorithm::ES256)] {
            let v = Verifier::from_public_key_file(&keys.join(format!("{name}-public.pem"))).unwrap();
            assert!(
                v.sign(&claims("a", Duration::from_secs(60))).is_none(),
                "a public key cannot sign"
            );
            let private = std::fs::read(keys.join(format!("{name}-private.pem"))).unwrap();
            let signing = match algorithm {
                Algorithm::EdDSA => EncodingKey::from_ed_pem(&private).unwrap(),
                _ => EncodingKey::from_ec_pem(&private).unwrap(),
            };
            let token = jsonwebtoken::encode(
                &Header::new(algorithm),
                &claims("bob", Duration::from_secs(60)),
                &signing,
            )
            .unwrap();
            assert_eq!(v.verify(&token).unwrap().member.as_str(), "bob", "{name}");
            // An HS256 token signed with the public key's bytes is refused (algorithm confusion).
            let public = std::fs::read(keys.join(format!("{name}-public.pem"))).unwrap();
            let confused = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims("mallory", Duration::from_secs(60)),
                &EncodingKey::from_secret(&public),
            )
            .unwrap();
            assert!(v.verify(&confused).is_err(), "{name}");
        }
        let err = Verifier::from_public_key_file(&keys.join("README")).unwrap_err();
        assert_eq!(err.variable, "TIDINGS_JWT_PUBLIC_KEY");
    }

    #[test]
    fn credentials_are_found_in_order() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=b; tidings_token=from-cookie".parse().unwrap());
        assert_eq!(credential(&h, Some("q"), None), Some(Credential::Token("from-cookie")));
        h.insert("authorization", "Bearer from-header".parse().unwrap());
        assert_eq!(credential(&h, Some("q"), None), Some(Credential::Token("from-header")));
        assert_eq!(
            credential(&HeaderMap::new(), Some("q"), Some("t")),
            Some(Credential::Token("q"))
        );
        assert_eq!(
            credential(&HeaderMap::new(), None, Some("t")),
            Some(Credential::Ticket("t"))
        );
        assert_eq!(credential(&HeaderMap::new(), Some(""), None), None);
    }
}
