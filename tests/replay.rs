//! `ontrack replay` as a user runs it: files in, flag events and rejected lines out.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::decided;
use ontrack::core::{Flag, Rules, Students, decode};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

fn ontrack(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ontrack"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ontrack-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn flags_come_out_in_emission_order_with_every_field_of_the_contract() {
    let days = common::school_days("2026-09-01", 12);
    let mut input: Vec<String> = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            common::attendance_json(
                &format!("a{i}"),
                "stu-7",
                d,
                if i == 0 { "absent_unexcused" } else { "present" },
            )
        })
        .collect();
    // Another student's suspension sits between the 10th and 11th day.
    input.insert(
        10,
        json!({"type": "discipline", "event_id": "d1", "student_id": "stu-8",
        "school_id": "sch-2", "date": days[9], "recorded_at": format!("{}T10:00:00Z", days[9]),
        "referral_id": "r1", "behavior": "FIGHT", "action": "out_of_school_suspension"})
        .to_string(),
    );
    let events = tmp("order.jsonl");
    std::fs::write(&events, input.join("\n") + "\n").unwrap();
    let out = tmp("order.flags.jsonl");
    let run = ontrack(
        &["replay", "--events", events.to_str().unwrap(), "--out", out.to_str().unwrap()],
        None,
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    for flag in lines(&out) {
        assert!(flag["emitted_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{flag}");
    }
    let flags: Vec<Value> = lines(&out).into_iter().map(common::without_emitted_at).collect();
    assert_eq!(
        flags,
        [
            json!({"type": "flag.raised", "flag_id": "2026-2027/stu-7/attendance/1", "student_id": "stu-7",
                "school_id": "sch-1", "flag": "attendance", "school_year": "2026-2027", "as_of": days[9],
                "caused_by": "a9", "evidence": {"days_enrolled": 10, "days_absent": 1, "absence_rate": 0.1}}),
            json!({"type": "flag.raised", "flag_id": "2026-2027/stu-8/behavior/1", "student_id": "stu-8",
                "school_id": "sch-2", "flag": "behavior", "school_year": "2026-2027", "as_of": days[9],
                "caused_by": "d1", "evidence": {"referrals": 1, "suspensions": 1}}),
            json!({"type": "flag.cleared", "flag_id": "2026-2027/stu-7/attendance/1", "student_id": "stu-7",
                "school_id": "sch-1", "flag": "attendance", "school_year": "2026-2027", "as_of": days[11],
                "caused_by": "a11", "evidence": {"days_enrolled": 12, "days_absent": 1, "absence_rate": 1.0 / 12.0}}),
        ]
    );
    // And every flag event is valid against the published schema.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/flag.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator =
        jsonschema::draft202012::options().should_validate_formats(true).build(&schema).unwrap();
    for flag in lines(&out) {
        assert!(validator.is_valid(&flag), "{flag}");
    }
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("13 events read, 0 rejected, 0 duplicates skipped, 2 students"),
        "{stderr}"
    );
}

#[test]
fn a_bad_line_is_reported_and_dead_lettered_and_the_run_goes_on() {
    let days = common::school_days("2026-09-01", 3);
    let input = [
        common::attendance_json("a0", "stu-1", &days[0], "absent_unexcused"),
        "{\"type\": \"attendance\", \"event_id\": ".to_string(),
        common::attendance_json("a1", "stu-1", &days[1], "absnt"),
        String::new(),
        common::attendance_json("a1", "stu-1", &days[1], "absent_excused"),
        common::attendance_json("a1", "stu-1", &days[1], "absent_excused"),
        common::attendance_json("a2", "stu-1", &days[2], "absent_unexcused"),
    ];
    let mut bytes = input.join("\n").into_bytes();
    bytes.extend_from_slice(b"\n\xff\xfe not utf-8\n");
    let dead = tmp("bad.rejected");
    let run = ontrack(
        &["replay", "--events", "-", "--out", "-", "--dead-letter", dead.to_str().unwrap()],
        Some(&bytes),
    );
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("line 2: invalid JSON: EOF while parsing"), "{stderr}");
    assert!(stderr.contains(
        "line 3: attendance.status: expected one of present, tardy, absent_excused, absent_unexcused, retracted, got \"absnt\""
    ), "{stderr}");
    assert!(stderr.contains("line 8: invalid JSON: not UTF-8"), "{stderr}");
    assert!(
        stderr.contains("7 events read, 3 rejected, 1 duplicates skipped, 1 students"),
        "{stderr}"
    );

    let rejected = lines(&dead);
    assert_eq!(rejected.iter().map(|r| r["line"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 3, 8]);
    assert_eq!(rejected[1]["raw"], input[2]);
    assert!(rejected[1]["reason"].as_str().unwrap().starts_with("attendance.status: "));
    assert_eq!(rejected[2]["raw_base64"], "//4gbm90IHV0Zi04");

    // The events after the bad lines still count: three absences in a row.
    let flags: Vec<Value> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0]["flag_id"], "2026-2027/stu-1/consecutive_absences/1");
    assert_eq!(flags[0]["caused_by"], "a2");
}

#[test]
fn a_broken_rules_file_stops_the_run_and_names_the_key() {
    let rules = tmp("bad-rules.toml");
    for (text, key) in [
        (
            "[attendance]\nraise_at_rate = 0.10\nclear_below_rate = 0.2\n",
            "attendance.clear_below_rate",
        ),
        ("[attendance]\nraise_rate = 0.2\n", "raise_rate"),
    ] {
        std::fs::write(&rules, text).unwrap();
        let args = ["replay", "--events", "-", "--out", "-", "--rules", rules.to_str().unwrap()];
        let run = ontrack(&args, Some(b""));
        assert!(!run.status.success(), "{text}");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains(key), "{stderr}");
    }
}

/// A synthetic district, as JSON lines.
fn district(students: &str, days: &str, seed: &str) -> Vec<String> {
    let run = ontrack(
        &["synth", "--students", students, "--days", days, "--seed", seed, "--bad-rate", "0.001"],
        None,
    );
    assert!(run.status.success());
    String::from_utf8(run.stdout).unwrap().lines().map(str::to_owned).collect()
}

fn replay_lines(lines: &[String], name: &str) -> (Vec<Value>, String) {
    let events = tmp(&format!("{name}.jsonl"));
    std::fs::write(&events, lines.join("\n")).unwrap();
    let out = tmp(&format!("{name}.flags.jsonl"));
    let run = ontrack(
        &["replay", "--events", events.to_str().unwrap(), "--out", out.to_str().unwrap()],
        None,
    );
    assert!(run.status.success());
    (lines_of(&out), String::from_utf8(run.stderr).unwrap())
}

fn lines_of(path: &Path) -> Vec<Value> {
    lines(path).into_iter().map(common::without_emitted_at).collect()
}

/// The last published state of each (student, flag): raised or not.
fn final_flags(flags: &[Value]) -> BTreeMap<(String, String), bool> {
    let mut last = BTreeMap::new();
    for f in flags {
        let key =
            (f["student_id"].as_str().unwrap().to_owned(), f["flag"].as_str().unwrap().to_owned());
        last.insert(key, f["type"] == "flag.raised");
    }
    last
}

#[test]
fn the_same_input_gives_the_same_flags_and_summary() {
    let input = district("300", "40", "7");
    let (a, summary_a) = replay_lines(&input, "same-a");
    let (b, summary_b) = replay_lines(&input, "same-b");
    assert!(a.len() > 100, "a district this size raises flags: {}", a.len());
    assert_eq!(a, b);
    let without_path = |s: &str| {
        s.lines().filter(|l| !l.starts_with("rejected lines:")).collect::<Vec<_>>().join("\n")
    };
    assert!(summary_a.contains("rejected lines: "), "{summary_a}");
    assert_eq!(without_path(&summary_a), without_path(&summary_b));
}

#[test]
fn shuffled_input_ends_with_the_same_flags_wherever_the_figures_decide_them() {
    let input = district("300", "65", "11");
    let mut shuffled = input.clone();
    shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(5));

    let (in_order, _) = replay_lines(&input, "order");
    let (out_of_order, _) = replay_lines(&shuffled, "shuffled");
    let (a, b) = (final_flags(&in_order), final_flags(&out_of_order));

    // The figures, from folding the events in the library.
    let rules = Rules::default();
    let mut students = Students::default();
    for line in &input {
        if let Ok(e) = decode(line.as_bytes()) {
            students.apply(&e, &rules);
        }
    }
    let mut compared = 0;
    for (student, state) in students.iter() {
        for flag in Flag::ALL {
            let key = (student.to_owned(), flag.as_str().to_owned());
            // Inside a hysteresis band the flag keeps what its history gave it.
            let Some(raised) = decided(*flag, state, &rules) else {
                continue;
            };
            assert_eq!(a.get(&key).copied().unwrap_or(false), raised, "{key:?} in order");
            assert_eq!(b.get(&key).copied().unwrap_or(false), raised, "{key:?} shuffled");
            compared += 1;
        }
    }
    assert!(compared > 1000, "{compared}");
}
