//! The decoder never panics: arbitrary bytes, arbitrary JSON, and event-shaped JSON with

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures
//! arbitrary values.

use ontrack::core::decode;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("status".to_string()),
                    Just("advocate".to_string()),
                    ".{0,8}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics_and_non_objects_are_rejected_whole(v in json()) {
        let json = v.to_string();
        let result = decode(json.as_bytes());
        if !v.is_object() {
            prop_assert!(result.unwrap_err().field.is_none());
        }
    }

    /// Every field an event can have, each with an arbitrary value, under every type.
    #[test]
    fn event_shaped_json_never_panics(
        kind in prop::sample::select(vec!["attendance", "discipline", "grade", "assignment", "x"]),
        fields in prop::collection::vec((prop::sample::select(vec![
            "event_id", "student_id", "school_id", "date", "recorded_at", "status", "referral_id",
            "behavior", "action", "action_days", "retracted", "section_id", "course_code",
            "subject", "grading_period", "letter_grade", "numeric_grade", "advocate_id",
            "advocate"]), json()), 0..20),
    ) {
        let mut obj = Map::new();
        obj.insert("type".into(), Value::from(kind));
        for (k, v) in fields {
            obj.insert(k.into(), v);
        }
        if let Err(e) = decode(Value::Object(obj).to_string().as_bytes()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
