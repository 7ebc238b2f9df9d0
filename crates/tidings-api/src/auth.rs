//! Producer authentication: `authorization: Bearer <key>` against the configured keys.
//! Transport-neutral: the service hands over the header's value (gRPC metadata today),
//! and a failure is an [`ApiError`] like any other.

use std::fmt;
use std::path::Path;

use subtle::ConstantTimeEq as _;
use tidings_domain::{ConfigError, Secret};

use crate::ApiError;

/// The authenticated caller. Scopes idempotency keys and names the caller in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer(pub String);

/// The producers' API keys. Empty means authentication is off (`tidings dev` only).
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<(String, Secret<String>)>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|(name, _)| name)).finish()
    }
}

/// Producer name used when authentication is off.
pub const ANONYMOUS: &str = "anonymous";

impl ApiKeys {
    /// Parses `name=key,name=key`, or reads that format (one pair per line, `#`
    /// comments) from the file `spec` names.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let err = |why: String| ConfigError::new("TIDINGS_API_KEYS", why);
        let text = if Path::new(spec.trim()).is_file() {
            std::fs::read_to_string(spec.trim()).map_err(|e| err(format!("cannot read the keys file ({e})")))?
        } else {
            spec.replace(',', "\n")
        };
        let mut keys: Vec<(String, Secret<String>)> = Vec::new();
        for (n, line) in text.lines().map(str::trim).enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, key) = line
                .split_once('=')
                .ok_or_else(|| err(format!("entry {} is not name=key", n + 1)))?;
            let (name, key) = (name.trim(), key.trim());
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !name_ok {
                return Err(err(format!(
                    "entry {}: the name must be 1..=64 of A-Z a-z 0-9 - _ .",
                    n + 1
                )));
            }
            if key.len() < 16 {
                return Err(err(format!(
                    "entry {} ({name}): the key must be at least 16 characters",
                    n + 1
                )));
            }
            if keys.iter().any(|(other, _)| other == name) {
                return Err(err(format!("producer {name} is listed twice")));
            }
            keys.push((name.to_owned(), Secret::new(key.to_owned())));
        }
        if keys.is_empty() {
            return Err(err("no keys given".into()));
        }
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The first configured key (`tidings dev` hands it to its own edge).
    pub fn first_key(&self) -> Option<Secret<String>> {
        self.keys.first().map(|(_, key)| key.clone())
    }

    /// Who presents this bearer key (`authorization` is the header's value, if any).
    /// Compares against every key in constant time, so timing reveals neither which key
    /// nor how much of one matched.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Producer, ApiError> {
        if self.keys.is_empty() {
            return Ok(Producer(ANONYMOUS.into()));
        }
        let presented = authorization
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(|| ApiError::Unauthenticated("missing `authorization: Bearer <api key>` metadata".into()))?;
        let mut found = None;
        for (name, key) in &self.keys {
            if bool::from(presented.trim().as_bytes().ct_eq(key.expose().as_bytes())) {
                found = Some(name);
            }
        }
        found
            .map(|name| Producer(name.clone()))
            .ok_or_else(|| ApiError::Unauthenticated("unknown api key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_refuses_weak_or_malformed_keys() {
        let keys = ApiKeys::parse("billing=0123456789abcdef, shipping = fedcba9876543210").unwrap();
        assert_eq!(
            format!("{keys:?}"),
            r#"["billing", "shipping"]"#,
            "Debug shows names only"
        );
        for bad in [
            "",
            "nokey",
            "a=short",
            "a b=0123456789abcdef",
            "a=0123456789abcdef,a=0123456789abcdeg",
        ] {
            let err = ApiKeys::parse(bad).unwrap_err();
            assert_eq!(err.variable, "TIDINGS_API_KEYS");
            assert!(!err.to_string().contains("0123456789"), "{err}");
        }
    }

    #[test]
    fn authenticates_by_bearer_key() {
        let keys = ApiKeys::parse("billing=0123456789abcdef").unwrap();
        let refused = |authorization| matches!(keys.authenticate(authorization), Err(ApiError::Unauthenticated(_)));
        assert_eq!(
            keys.authenticate(Some("Bearer 0123456789abcdef")).unwrap(),
            Producer("billing".into())
        );
        for bad in [
            "Bearer 0123456789abcdeX",
            "Bearer ",
            "0123456789abcdef",
            "Basic 0123456789abcdef",
        ] {
            assert!(refused(Some(bad)), "{bad}");
        }
        assert!(refused(None));
        assert_eq!(
            ApiKeys::default().authenticate(None).unwrap(),
            Producer(ANONYMOUS.into())
        );
    }
}
