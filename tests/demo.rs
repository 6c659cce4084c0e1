//! `ontrack demo` runs by itself on the in-process Kafka and ends with its summary.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::process::Command;

#[test]
fn the_demo_streams_a_district_and_prints_the_summary() {
    let out = Command::new(env!("CARGO_BIN_EXE_ontrack"))
        .args(["demo", "--students", "150", "--days", "15", "--seed", "3"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ontrack demo: 150 students in 2 schools, 15 school days"), "{stdout}");
    // One line per school day, then the summary.
    let days = stdout.lines().filter(|l| !l.starts_with(' ') && l.ends_with(" flag changes"));
    assert_eq!(days.count(), 15, "{stdout}");
    assert!(stdout.contains("summary: 150 students"), "{stdout}");
    // Advocates hear about each day's absences that day, through signed webhooks.
    let alerted = stdout.lines().filter(|l| l.contains("advocates alerted: ")).count();
    assert!(alerted >= 14, "{stdout}");
    let alerts =
        stdout.lines().find(|l| l.starts_with("advocate alerts (signed webhooks)")).unwrap();
    assert!(alerts.ends_with("; 0 bad signatures"), "{alerts}");
    assert!(!alerts.contains(" 0 same-day absences"), "{alerts}");
    let attendance = stdout.lines().find(|l| l.starts_with("attendance ")).unwrap();
    let raised: u64 = attendance.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(raised > 0, "{attendance}");
    // The same district through replay raises the same number (days passing included).
    let synth = Command::new(env!("CARGO_BIN_EXE_ontrack"))
        // The demo's default district: one school of each kind.
        .args(["synth", "--students", "150", "--days", "15", "--seed", "3", "--feed", "mixed"])
        .output()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("e.jsonl");
    std::fs::write(&events, &synth.stdout).unwrap();
    let replay = Command::new(env!("CARGO_BIN_EXE_ontrack"))
        .args(["replay", "--events", events.to_str().unwrap(), "--out", "-"])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&replay.stderr);
    let replayed = summary.lines().find(|l| l.starts_with("attendance ")).unwrap();
    assert_eq!(
        attendance.split_whitespace().take(4).collect::<Vec<_>>(),
        replayed.split_whitespace().take(4).collect::<Vec<_>>()
    );
}
