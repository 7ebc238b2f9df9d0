//! HS256 subscriber tokens, checked here rather than by jsonwebtoken's generic path,
//! which every connect pays for: it keys a new HMAC from the secret for each token,
//! parses the whole JOSE header (a dozen optional fields, `jwk` among them, through a
//! buffering deserializer) and then the claims twice, once for its checks and once
//! for ours. Besides the hashing, that was 17,000 instructions a connect, a sixth of
//! the edge's user-space work (BENCHMARKS.md, session 14). Here the HMAC is keyed
//! once, the header is read for `alg` only, and the claims once. What is accepted is
//! what jsonwebtoken accepts with `auth.rs`'s validation: a test there compares the
//! two verdicts on every kind of token, good and bad.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use sha2::Sha256;

/// The secret, keyed into an HMAC once: each token's check starts from a copy.
#[derive(Clone)]
pub(crate) struct Hs256 {
    keyed: Hmac<Sha256>,
}

/// Of the JOSE header, what the check needs.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
}

/// The claims a subscriber token carries (`nbf`, when present, is checked here).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenClaims {
    pub(crate) sub: String,
    pub(crate) exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    pub(crate) topics: Option<Vec<String>>,
}

/// Why a token is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Malformed, another algorithm, a wrong signature, or bad claims: why.
    Invalid(String),
    /// `nbf` is ahead of the clock by more than the leeway.
    NotYetValid,
}

/// A base64url SHA-256 MAC is 43 characters; anything much longer is not one.
const MAX_SIGNATURE_CHARS: usize = 88;

impl Hs256 {
    /// `None` only if the HMAC refused the key, which it does for no length.
    pub(crate) fn new(secret: &[u8]) -> Option<Self> {
        Some(Self {
            keyed: Hmac::new_from_slice(secret).ok()?,
        })
    }

    /// Checks `token`'s form, algorithm and signature, and its `nbf` against `now`
    /// (Unix seconds) with `nbf_leeway` seconds; returns its claims. `exp` is checked by
    /// the caller, exactly, as for a ticket's claims.
    pub(crate) fn verify(&self, token: &str, now: u64, nbf_leeway: u64) -> Result<TokenClaims, Refused> {
        let invalid = Refused::Invalid;
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not header.payload.signature".into()));
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|e| invalid(format!("header: {e}")))?;
        let jose: Header<'_> = object(&header_json).map_err(|e| invalid(format!("header: {e}")))?;
        if jose.alg != "HS256" {
            // Not echoed: the header is the client's, of any length.
            return Err(invalid("alg: only HS256 is accepted".into()));
        }
        if signature.len() > MAX_SIGNATURE_CHARS {
            return Err(invalid("signature: too long".into()));
        }
        let mut mac = [0u8; MAX_SIGNATURE_CHARS];
        let mac_len = URL_SAFE_NO_PAD
            .decode_slice(signature, &mut mac)
            .map_err(|e| invalid(format!("signature: {e}")))?;
        let mut keyed = self.keyed.clone();
        // What was signed: `header.payload`.
        keyed.update(&token.as_bytes()[..header.len() + 1 + payload.len()]);
        keyed
            .verify_slice(&mac[..mac_len])
            .map_err(|_| invalid("signature: does not match".into()))?;
        let claims_json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| invalid(format!("claims: {e}")))?;
        let claims: TokenClaims = object(&claims_json).map_err(|e| invalid(format!("claims: {e}")))?;
        if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(nbf_leeway)) {
            return Err(Refused::NotYetValid);
        }
        Ok(claims)
    }
}

/// A JSON object as `T` (a derived struct would also take an array of its fields; JWT
/// parts are objects).
fn object<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Result<T, Cow<'static, str>> {
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    serde_json::from_slice(json).map_err(|e| e.to_string().into())
}
