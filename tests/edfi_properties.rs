//! Properties of the Ed-Fi translation core (`ontrack::edfi`):
//! - any message, however malformed, is translated or rejected, never a panic, and every event
//!   it writes is valid contract v1.1;
//! - the documents' messages read in any interleaving (each document's own messages in their
//!   order, as Kafka keeps them per key) end in the same final record for every natural key:
//!   the partitions of the DMS topic may be read in any order;
//! - a message read again (a re-send, or after a crash) changes nothing.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::collections::BTreeMap;

mod common;

use ontrack::edfi::{Memories, Outcome, Translator};
use proptest::prelude::*;
use serde_json::{Value, json};

const RESOURCES: [&str; 11] = [
    "StudentSchoolAttendanceEvent",
    "DisciplineAction",
    "Grade",
    "StudentSchoolAssociation",
    "CalendarDate",
    "Course",
    "CourseOffering",
    "Cohort",
    "StaffCohortAssociation",
    "StudentCohortAssociation",
    "Student",
];

/// Field names the documents use, so that random documents hit the paths the reader takes.
const FIELDS: [&str; 22] = [
    "studentReference",
    "studentUniqueId",
    "schoolReference",
    "schoolId",
    "eventDate",
    "attendanceEventCategoryDescriptor",
    "disciplines",
    "disciplineDescriptor",
    "gradeTypeDescriptor",
    "studentSectionAssociationReference",
    "gradingPeriodReference",
    "calendarReference",
    "calendarEvents",
    "date",
    "courseCode",
    "academicSubjects",
    "cohortReference",
    "cohortIdentifier",
    "cohortTypeDescriptor",
    "staffReference",
    "staffUniqueId",
    "beginDate",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|n| json!(n)),
        "[a-zA-Z0-9 #:/é\\-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("2021-09-08"),
            Just("2021-02-30"),
            Just("uri://ed-fi.org/AttendanceEventCategoryDescriptor#Tardy"),
            Just("uri://ed-fi.org/GradeTypeDescriptor#Grading Period"),
            Just("uri://ed-fi.org/CalendarEventDescriptor#Holiday"),
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(&FIELDS[..]), inner), 0..6).prop_map(
                |pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

/// A message: a v1 envelope, a Debezium row, or anything at all.
fn message() -> impl Strategy<Value = (Option<Vec<u8>>, Option<Vec<u8>>)> {
    let key = prop::option::of("[a-z0-9{}\":]{0,8}".prop_map(String::into_bytes));
    let envelope = (
        prop::sample::select(&RESOURCES[..]),
        json_value(),
        prop::option::of(any::<i64>()),
        json_value(),
        any::<bool>(),
        prop::sample::select(vec!["u1", "u2", "u3"]),
    )
        .prop_map(|(resource, document, version, modified, debezium, uuid)| {
            let m = if debezium {
                json!({
                    "documentuuid": uuid, "resourcename": resource, "edfidoc": document,
                    "lastmodifiedat": modified, "__deleted": if version.is_some() { "false" } else { "true" }
                })
            } else {
                json!({
                    "documentUuid": uuid, "resourceName": resource, "contentVersion": version,
                    "lastModifiedAt": modified, "document": document
                })
            };
            m.to_string().into_bytes()
        });
    let value = prop::option::of(prop_oneof![
        envelope,
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..20),
    ]);
    (key, value)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_message_is_translated_or_rejected_and_every_event_is_valid(
        messages in prop::collection::vec(message(), 1..8)
    ) {
        let translator = reading_cohorts();
        let mut memory = Memories::default();
        for (key, value) in &messages {
            let t = translator.translate(&mut memory, key.as_deref(), value.as_deref()).unwrap();
            if let Outcome::Rejected(reason) = &t.outcome {
                prop_assert!(!reason.is_empty());
            }
            for e in &t.events {
                let decoded = ontrack::core::decode(e.json.as_bytes());
                prop_assert!(decoded.is_ok(), "{} → {:?}", e.json, decoded.err());
            }
        }
    }
}

/// A translator that reads counselor lists (cohorts are not read by default).
fn reading_cohorts() -> Translator {
    let config = ontrack::edfi::EdfiConfig {
        cohort_types: vec!["uri://ed-fi.org/CohortTypeDescriptor#Counselor List".into()],
        ..ontrack::edfi::EdfiConfig::default()
    };
    Translator::new(ontrack::edfi::Mapping::new(&config).unwrap())
}

/// One document's life: versions (each a different day, category, mark …), maybe deleted.
#[derive(Debug, Clone)]
struct Life {
    uuid: String,
    resource: &'static str,
    versions: Vec<Value>,
    /// `lastModifiedAt` of each version (small range: ties across documents happen).
    times: Vec<u32>,
    deleted: bool,
    debezium: bool,
}

fn document(resource: &'static str) -> BoxedStrategy<Value> {
    let student = prop::sample::select(vec!["s1", "s2"]);
    let school = prop::sample::select(vec![1, 2]);
    let date = prop::sample::select(vec!["2021-09-06", "2021-09-07", "2021-09-08"]);
    match resource {
        "StudentSchoolAttendanceEvent" => (student, school, date, prop::sample::select(vec![
            "Tardy", "Excused Absence", "Unexcused Absence", "In Attendance", "Partial",
        ]))
            .prop_map(|(st, sc, d, c)| json!({
                "studentReference": {"studentUniqueId": st}, "schoolReference": {"schoolId": sc},
                "eventDate": d,
                "attendanceEventCategoryDescriptor": format!("uri://ed-fi.org/AttendanceEventCategoryDescriptor#{c}")
            }))
            .boxed(),
        "CalendarDate" => (school, date, prop::sample::select(vec!["Instructional day", "Holiday", "Weather day"]))
            .prop_map(|(sc, d, e)| json!({
                "calendarReference": {"calendarCode": "c", "schoolId": sc, "schoolYear": 2022},
                "date": d,
                "calendarEvents": [{"calendarEventDescriptor": format!("uri://ed-fi.org/CalendarEventDescriptor#{e}")}]
            }))
            .boxed(),
        "DisciplineAction" => (student, school, date, prop::sample::select(vec!["In School Suspension", "Other", "Expulsion"]), 0..3u32)
            .prop_map(|(st, sc, d, a, days)| json!({
                "disciplineActionIdentifier": "7", "disciplineDate": d,
                "studentReference": {"studentUniqueId": st}, "responsibilitySchoolReference": {"schoolId": sc},
                "disciplines": [{"disciplineDescriptor": format!("uri://ed-fi.org/DisciplineDescriptor#{a}")}],
                "disciplineActionLength": days
            }))
            .boxed(),
        "Grade" => (student, prop::sample::select(vec!["F", "D", "B"]), prop::sample::select(vec!["ALG-1", "ENG-1"]))
            .prop_map(|(st, l, course)| json!({
                "gradeTypeDescriptor": "uri://ed-fi.org/GradeTypeDescriptor#Grading Period",
                "gradingPeriodReference": {"gradingPeriodDescriptor": "uri://ed-fi.org/GradingPeriodDescriptor#First Six Weeks", "schoolId": 1, "schoolYear": 2022},
                "studentSectionAssociationReference": {"beginDate": "2021-08-23", "localCourseCode": course, "schoolId": 1, "schoolYear": 2022, "sectionIdentifier": "S", "sessionName": "Fall", "studentUniqueId": st},
                "letterGradeEarned": l
            }))
            .boxed(),
        "Course" => (prop::sample::select(vec!["ALG-1", "ENG-1"]), prop::sample::select(vec!["Mathematics", "English", "Fine and Performing Arts"]))
            .prop_map(|(code, subject)| json!({
                "courseCode": code, "educationOrganizationReference": {"educationOrganizationId": 1},
                "academicSubjects": [{"academicSubjectDescriptor": format!("uri://ed-fi.org/AcademicSubjectDescriptor#{subject}")}]
            }))
            .boxed(),
        "Cohort" => (prop::sample::select(vec!["A", "B"]), prop::sample::select(vec!["Counselor List", "Study Hall"]))
            .prop_map(|(id, kind)| json!({
                "cohortIdentifier": id, "educationOrganizationReference": {"educationOrganizationId": 1},
                "cohortTypeDescriptor": format!("uri://ed-fi.org/CohortTypeDescriptor#{kind}")
            }))
            .boxed(),
        "StaffCohortAssociation" | "StudentCohortAssociation" => (
            prop::sample::select(vec!["A", "B"]),
            prop::sample::select(vec!["t1", "t2"]),
            student,
            date,
            prop::option::of(Just("2021-09-30")),
        )
            .prop_map(move |(id, staff, st, begin, end)| {
                let mut d = json!({
                    "cohortReference": {"cohortIdentifier": id, "educationOrganizationId": 1},
                    "beginDate": begin, "endDate": end
                });
                if resource == "StaffCohortAssociation" {
                    d["staffReference"] = json!({"staffUniqueId": staff});
                } else {
                    d["studentReference"] = json!({"studentUniqueId": st});
                }
                d
            })
            .boxed(),
        "CourseOffering" => prop::sample::select(vec!["ALG-1", "ENG-1"])
            .prop_map(|code| json!({
                "localCourseCode": "ALG-1", "courseReference": {"courseCode": code, "educationOrganizationId": 1},
                "schoolReference": {"schoolId": 1},
                "sessionReference": {"schoolId": 1, "schoolYear": 2022, "sessionName": "Fall"}
            }))
            .boxed(),
        _ => (student, school, date, prop::option::of(Just("2021-09-08")))
            .prop_map(|(st, sc, d, exit)| json!({
                "studentReference": {"studentUniqueId": st}, "schoolReference": {"schoolId": sc},
                "entryDate": d, "exitWithdrawDate": exit
            }))
            .boxed(),
    }
}

fn life(i: usize) -> impl Strategy<Value = Life> {
    prop::sample::select(&RESOURCES[..10]).prop_flat_map(move |resource| {
        (
            prop::collection::vec(document(resource), 1..4),
            prop::collection::vec(0..4u32, 4),
            any::<bool>(),
            prop::bool::weighted(0.3),
        )
            .prop_map(move |(versions, mut times, deleted, debezium)| {
                times.sort_unstable();
                Life { uuid: format!("d{i}"), resource, versions, times, deleted, debezium }
            })
    })
}

/// A document's messages in order: its versions (the second one repeated: a re-send), then
/// its delete.
fn messages_of(l: &Life) -> Vec<(String, Option<String>)> {
    let at = |i: usize| format!("2021-10-01T13:00:0{}Z", l.times[i.min(3)]);
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for (i, doc) in l.versions.iter().enumerate() {
        let m = if l.debezium {
            json!({"documentuuid": l.uuid, "resourcename": l.resource, "edfidoc": doc, "lastmodifiedat": at(i), "__deleted": "false"})
        } else {
            json!({"documentUuid": l.uuid, "resourceName": l.resource, "contentVersion": i + 1, "lastModifiedAt": at(i), "document": doc})
        };
        out.push((l.uuid.clone(), Some(m.to_string())));
        if i == 1 {
            out.push((l.uuid.clone(), Some(m.to_string())));
        }
    }
    if l.deleted {
        let last = l.versions.len();
        let value = l.debezium.then(|| {
            json!({"documentuuid": l.uuid, "resourcename": l.resource, "edfidoc": l.versions[last - 1], "lastmodifiedat": at(last), "__deleted": "true"}).to_string()
        });
        out.push((l.uuid.clone(), value));
    }
    out
}

/// Merges the documents' message lists in the order `picks` says (each pick chooses among the
/// lists not yet used up), keeping every list's own order.
fn interleave(
    lists: &[Vec<(String, Option<String>)>],
    picks: &[usize],
) -> Vec<(String, Option<String>)> {
    let mut at = vec![0; lists.len()];
    let mut out = Vec::new();
    let mut picks = picks.iter().cycle();
    while out.len() < lists.iter().map(Vec::len).sum() {
        let open: Vec<usize> = (0..lists.len()).filter(|i| at[*i] < lists[*i].len()).collect();
        let i = open[picks.next().unwrap() % open.len()];
        out.push(lists[i][at[i]].clone());
        at[i] += 1;
    }
    out
}

/// The final record of each natural key after translating `messages` (every event valid).
fn finals(messages: &[(String, Option<String>)]) -> BTreeMap<String, Value> {
    let translator = reading_cohorts();
    let mut memory = Memories::default();
    let mut events = Vec::new();
    for (key, value) in messages {
        let t = translator
            .translate(&mut memory, Some(key.as_bytes()), value.as_deref().map(str::as_bytes))
            .unwrap();
        assert!(!matches!(t.outcome, Outcome::Rejected(_)), "{t:?}");
        for e in t.events {
            assert!(ontrack::core::decode(e.json.as_bytes()).is_ok(), "{}", e.json);
            events.push(serde_json::from_str(&e.json).unwrap());
        }
    }
    common::final_records(events)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_of_the_documents_ends_in_the_same_records(
        lives in (1..7usize).prop_flat_map(|n| (0..n).map(life).collect::<Vec<_>>()),
        first in prop::collection::vec(0..7usize, 1..30),
        second in prop::collection::vec(0..7usize, 1..30),
    ) {
        let lists: Vec<_> = lives.iter().map(messages_of).collect();
        let a = finals(&interleave(&lists, &first));
        let b = finals(&interleave(&lists, &second));
        prop_assert_eq!(a, b);
    }

    /// A message read again, right after itself (a re-send) or after everything else (an old
    /// version delivered again): nothing changes. (The Debezium form has no versions: an old
    /// row read after a newer one modified in the same second is not told apart, so it is
    /// read again only right after itself.)
    #[test]
    fn a_message_read_again_changes_nothing(
        lives in (1..5usize).prop_flat_map(|n| (0..n).map(life).collect::<Vec<_>>()),
        picks in prop::collection::vec(0..5usize, 1..20),
        again in 0..40usize,
    ) {
        let lists: Vec<_> = lives.iter().map(messages_of).collect();
        let messages = interleave(&lists, &picks);
        let translator = reading_cohorts();
        let mut memory = Memories::default();
        let i = again % messages.len();
        let read = |memory: &mut Memories, (key, value): &(String, Option<String>)| {
            let value = value.as_deref().map(str::as_bytes);
            translator.translate(memory, Some(key.as_bytes()), value).unwrap()
        };
        for (n, m) in messages.iter().enumerate() {
            read(&mut memory, m);
            if n == i {
                let t = read(&mut memory, m);
                prop_assert!(t.events.is_empty(), "read again at once: {:?}", t);
            }
        }
        let debezium = lives.iter().any(|l| l.uuid == messages[i].0 && l.debezium);
        if !debezium || messages[i].1.is_none() {
            let t = read(&mut memory, &messages[i]);
            prop_assert!(t.events.is_empty(), "read again at the end: {:?}", t);
        }
    }
}
