//! The JSON Schemas in `schemas/` against their examples, and the decoder against the schemas.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::fs;
use std::path::{Path, PathBuf};

use ontrack::core::decode;
use serde_json::Value;

const INPUTS: [&str; 6] =
    ["attendance", "discipline", "grade", "assignment", "enrollment", "calendar"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn validator(name: &str) -> jsonschema::Validator {
    let text = fs::read_to_string(root().join(format!("{name}.schema.json"))).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert!(jsonschema::meta::is_valid(&schema), "{name}.schema.json is not a valid JSON Schema");
    jsonschema::draft202012::options().should_validate_formats(true).build(&schema).unwrap()
}

/// `(file name, bytes, expected valid)` of every example of one schema.
fn examples(name: &str) -> Vec<(String, Vec<u8>, bool)> {
    let mut out: Vec<_> = fs::read_dir(root().join("examples").join(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            let valid = file.starts_with("valid-");
            assert!(valid || file.starts_with("invalid-"), "{file}: name it valid-* or invalid-*");
            (file, fs::read(&p).unwrap(), valid)
        })
        .collect();
    out.sort();
    assert!(out.iter().any(|e| e.2) && out.iter().any(|e| !e.2), "{name}: need both kinds");
    out
}

#[test]
fn every_example_validates_as_its_name_says() {
    for name in INPUTS.iter().chain(&["flag"]) {
        let v = validator(name);
        for (file, bytes, valid) in examples(name) {
            let instance: Value = serde_json::from_slice(&bytes).unwrap();
            let errors: Vec<String> = v.iter_errors(&instance).map(|e| e.to_string()).collect();
            assert_eq!(errors.is_empty(), valid, "{name}/{file}: schema says {errors:?}");
        }
    }
}

#[test]
fn the_decoder_agrees_with_the_schema_on_every_example() {
    for name in INPUTS {
        let v = validator(name);
        for (file, bytes, _) in examples(name) {
            let instance: Value = serde_json::from_slice(&bytes).unwrap();
            let schema_ok = v.is_valid(&instance);
            let decoded = decode(&bytes);
            assert_eq!(decoded.is_ok(), schema_ok, "{name}/{file}: decoder says {decoded:?}");
            match decoded {
                Ok(event) => assert_eq!(event.kind().as_str(), name, "{file}"),
                // Every rejection names the field at fault.
                Err(err) => assert!(err.field.is_some(), "{name}/{file}: {err}"),
            }
        }
    }
}

#[test]
fn a_valid_event_of_one_type_is_invalid_for_the_others() {
    for name in INPUTS {
        let (_, bytes, _) = examples(name).into_iter().find(|e| e.2).unwrap();
        let instance: Value = serde_json::from_slice(&bytes).unwrap();
        for other in INPUTS.iter().filter(|o| **o != name) {
            assert!(!validator(other).is_valid(&instance), "{name} example passes {other}");
        }
    }
}

mod agreement {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;
    use serde_json::json;

    /// Values a mutation may put in a field: right and wrong types, edge formats.
    fn values() -> Vec<Value> {
        vec![
            json!(null),
            json!(true),
            json!(0),
            json!(-1),
            json!(59.5),
            json!(100),
            json!(100.5),
            json!(""),
            json!("x"),
            json!([]),
            json!({}),
            json!({"email": "a@b.c"}),
            json!("present"),
            json!("absent_excused"),
            json!("retracted"),
            json!("expulsion"),
            json!("math"),
            json!("other"),
            json!("A"),
            json!("F-"),
            json!("E"),
            json!("2026-09-14"),
            json!("2026-9-14"),
            json!("2026-02-29"),
            json!("2028-02-29"),
            json!("2026-09-14T08:40:12Z"),
            json!("2026-09-14T08:40:12.5+05:30"),
            json!("2026-09-14t08:40:12z"),
            json!("2026-09-14T08:40:12+0400"),
            json!("2026-09-14T24:00:00Z"),
            json!("2026-09-14T23:59:60Z"),
            json!("2026-09-14T08:40Z"),
            json!(" 2026-09-14"),
            json!("0001-01-01T00:00:00Z"),
            json!("2026-12-31T18:59:60-05:00"),
            json!("2026-09-14T08:40:12.Z"),
            json!("2026-09-14T08:40:12+24:00"),
        ]
    }

    const FIELDS: &[&str] = &[
        "type",
        "event_id",
        "student_id",
        "school_id",
        "date",
        "recorded_at",
        "status",
        "referral_id",
        "behavior",
        "action",
        "action_days",
        "retracted",
        "section_id",
        "course_code",
        "subject",
        "grading_period",
        "letter_grade",
        "numeric_grade",
        "advocate_id",
        "advocate",
        "exit_date",
        "instructional",
    ];

    #[derive(Debug, Clone)]
    enum Mutation {
        Remove(&'static str),
        Set(&'static str, Value),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            select(FIELDS).prop_map(Mutation::Remove),
            (select(FIELDS), select(values())).prop_map(|(f, v)| Mutation::Set(f, v)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Mutated examples: whenever the schema accepts, the decoder accepts, and the reverse.
        #[test]
        fn decoder_and_schema_agree_on_mutated_examples(
            kind in select(INPUTS.to_vec()),
            pick in any::<prop::sample::Index>(),
            mutations in prop::collection::vec(mutation(), 1..4),
        ) {
            let valid: Vec<_> = examples(kind).into_iter().filter(|e| e.2).collect();
            let (_, bytes, _) = &valid[pick.index(valid.len())];
            let mut instance: Value = serde_json::from_slice(bytes).unwrap();
            for m in &mutations {
                let obj = instance.as_object_mut().unwrap();
                match m {
                    Mutation::Remove(f) => { obj.remove(*f); }
                    Mutation::Set(f, v) => { obj.insert((*f).to_string(), v.clone()); }
                }
            }
            // Decide by the schema of the type the instance claims, as a topic would.
            let claimed = instance["type"].as_str().filter(|t| INPUTS.contains(t));
            let schema_ok = claimed.is_some_and(|t| validator(t).is_valid(&instance));
            let json = instance.to_string();
            let decoded = decode(json.as_bytes());
            prop_assert_eq!(decoded.is_ok(), schema_ok, "{} decoder: {:?}", instance, decoded);
        }
    }
}
