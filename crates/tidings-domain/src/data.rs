//! The JSON a producer attaches to a notification or a topic message (`data_json`):
//! checked once, re-written compactly, and never changed in value on the way.

/// Why a `data_json` text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// Not JSON, or nested deeper than 128 levels.
    #[error("not valid JSON ({0})")]
    NotJson(String),
    /// A number that would arrive as a different number: send it as a string.
    #[error(
        "the number {0} cannot be carried exactly (integers up to 64 bits, decimals as precise as a double): send it as a string"
    )]
    InexactNumber(String),
}

/// `text` as compact JSON, `None` when it is empty or blank. The value is the producer's
/// exactly: a number a 64-bit integer or a double cannot hold without change (a 30-digit
/// integer, `0.1000000000000000000001`; `1e400` is not valid for serde_json at all) is
/// refused rather than rounded. (serde_json's `float_roundtrip` makes its doubles the
/// correctly rounded ones this check computes.)
pub fn compact_json(text: &str) -> Result<Option<String>, DataError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DataError::NotJson(e.to_string()))?;
    for number in numbers(text) {
        if !exact(number) {
            let shown: String = number.chars().take(40).collect();
            return Err(DataError::InexactNumber(shown));
        }
    }
    Ok(Some(value.to_string()))
}

/// Whether a compact JSON text (as [`compact_json`] returns it) has U+0000 in any string
/// or object key: Postgres `text` and `jsonb` cannot hold it.
pub fn json_holds_nul(json: &str) -> bool {
    // Compact JSON escapes U+0000 as `\u0000`; raw NUL bytes cannot occur in valid JSON.
    // An escaped backslash before `u0000` (`\\u0000`) is the text "\u0000", not NUL:
    // count the backslashes in front.
    let bytes = json.as_bytes();
    let mut from = 0;
    while let Some(at) = json[from..].find("u0000").map(|i| from + i) {
        let slashes = bytes[..at].iter().rev().take_while(|b| **b == b'\\').count();
        if slashes % 2 == 1 {
            return true;
        }
        from = at + 1;
    }
    false
}

/// The number literals of a valid JSON text, outside its strings.
fn numbers(json: &str) -> impl Iterator<Item = &str> {
    let bytes = json.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while i < bytes.len() && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                        i += 1;
                    }
                    return Some(&json[start..i]);
                }
                _ => i += 1,
            }
        }
        None
    })
}

/// Whether serde_json keeps the value of this JSON number literal: an integer that fits
/// 64 bits stays an integer; anything else becomes a double, which serde_json writes in
/// its shortest spelling (ryu), and that spelling must have the literal's exact decimal
/// value. (Two shortest spellings can exist: `123401238764589.13` and `…12` are the
/// same double, and serde_json writes `…12`; the first is refused.)
fn exact(literal: &str) -> bool {
    let integer = !literal.contains(['.', 'e', 'E']);
    if integer && (literal.parse::<i64>().is_ok() || literal.parse::<u64>().is_ok()) {
        return true;
    }
    match literal.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
        Some(double) => decimal(literal) == decimal(&double.to_string()),
        None => false,
    }
}

/// A decimal literal's value as (negative, significant digits, exponent of the first
/// digit); zero of either sign is `(false, "", 0)`, as Postgres' `numeric` has no -0.
fn decimal(literal: &str) -> (bool, String, i64) {
    let (negative, unsigned) = literal.strip_prefix('-').map_or((false, literal), |rest| (true, rest));
    let (mantissa, exponent) = unsigned
        .split_once(['e', 'E'])
        .map_or((unsigned, 0), |(m, e)| (m, e.parse::<i64>().unwrap_or(0)));
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let leading = digits.len() - digits.trim_start_matches('0').len();
    let significant = digits.trim_matches('0');
    if significant.is_empty() {
        return (false, String::new(), 0);
    }
    // The first significant digit's power of ten.
    let position = i64::try_from(whole.len()).unwrap_or(i64::MAX) - 1 - i64::try_from(leading).unwrap_or(0);
    (negative, significant.to_owned(), exponent.saturating_add(position))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn json_is_compacted_and_blank_is_none() {
        assert_eq!(compact_json(""), Ok(None));
        assert_eq!(compact_json(" \n"), Ok(None));
        assert_eq!(
            compact_json(r#"{ "a" : [1, 2.5, "x"] }"#),
            Ok(Some(r#"{"a":[1,2.5,"x"]}"#.into()))
        );
        assert!(matches!(compact_json("{oops"), Err(DataError::NotJson(_))));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(
            matches!(compact_json(&deep), Err(DataError::NotJson(_))),
            "nesting is bounded"
        );
    }

    #[test]
    fn numbers_arrive_as_sent_or_are_refused() {
        for kept in [
            "0",
            "-0",
            "1",
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551615",
            "0.1",
            "2.5",
            "1e2",
            "1E+2",
            "-1.5e-7",
            "100.000",
            "0.30000000000000004",
            "1.7976931348623157e308",
            "5e-324",
            "123456789.125",
        ] {
            assert!(compact_json(kept).is_ok(), "{kept}");
        }
        // Beyond a double: serde_json itself refuses these.
        for huge in ["1e400", "-1e400"] {
            assert!(matches!(compact_json(huge), Err(DataError::NotJson(_))), "{huge}");
        }
        for changed in [
            "18446744073709551616",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "0.1000000000000000000001",
            "1.00000000000000001",
            "9007199254740993.0",
            // Found by fuzzing: the same double as 123401238764589.12, which is what
            // serde_json writes.
            "123401238764589.13",
        ] {
            assert!(
                matches!(compact_json(changed), Err(DataError::InexactNumber(_))),
                "{changed}"
            );
            let nested = format!(r#"{{"a":["x",{{"n":{changed}}}]}}"#);
            assert!(
                matches!(compact_json(&nested), Err(DataError::InexactNumber(_))),
                "{nested}"
            );
        }
        // Digits inside strings are text, not numbers.
        assert!(compact_json(r#"{"id":"123456789012345678901234567890"}"#).is_ok());
        assert!(compact_json(r#"["\"1e400", 1]"#).is_ok());
    }

    #[test]
    fn nul_is_found_in_strings_and_keys_but_not_in_escaped_text() {
        assert!(json_holds_nul(r#"{"a":"x\u0000"}"#));
        assert!(json_holds_nul(r#"{"k\u0000":1}"#));
        assert!(json_holds_nul(r#"["\\\u0000"]"#));
        assert!(!json_holds_nul(r#"{"a":"\\u0000"}"#));
        assert!(!json_holds_nul(r#"{"u0000":"\\u0000"}"#));
    }

    proptest! {
        /// What is accepted keeps its value: parsing the compact text gives the value
        /// parsing the original gave.
        #[test]
        fn accepted_values_survive(n in any::<f64>().prop_filter("finite", |n| n.is_finite()), i in any::<i64>()) {
            // Doubles as serde_json (and JavaScript) spell them: the shortest, closest.
            let f = serde_json::to_string(&n).unwrap();
            let text = format!(r#"{{"f":{f},"i":{i}}}"#);
            let compact = compact_json(&text).unwrap().unwrap();
            let a: serde_json::Value = serde_json::from_str(&text).unwrap();
            let b: serde_json::Value = serde_json::from_str(&compact).unwrap();
            prop_assert_eq!(a, b);
        }
    }
}
