//! A producer's `data_json`: never a panic; what is accepted is compact JSON that
//! checks again to itself and holds the value the producer sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_domain::{compact_json, json_holds_nul};

fuzz_target!(|text: &str| {
    if let Ok(Some(compact)) = compact_json(text) {
        assert_eq!(
            compact_json(&compact).as_ref(),
            Ok(&Some(compact.clone())),
            "idempotent"
        );
        let sent: serde_json::Value = serde_json::from_str(text).expect("accepted means valid");
        let kept: serde_json::Value = serde_json::from_str(&compact).expect("compact is valid");
        assert_eq!(sent, kept, "the value is kept");
        assert_eq!(
            json_holds_nul(&compact),
            holds_nul(&kept),
            "NUL found exactly when present"
        );
    }
});

fn holds_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(holds_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}
