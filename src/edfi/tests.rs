#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;
use crate::core::decode;

const EXCUSED: &str = "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Excused Absence";
const UNEXCUSED: &str = "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Unexcused Absence";
const TARDY: &str = "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Tardy";

fn attendance(date: &str, category: &str) -> Value {
    json!({
        "studentReference": {"studentUniqueId": "604822", "link": {"rel": "Student", "href": "/x"}},
        "schoolReference": {"schoolId": 255901001},
        "sessionReference": {"schoolId": 255901001, "schoolYear": 2022, "sessionName": "Fall"},
        "eventDate": date,
        "attendanceEventCategoryDescriptor": category
    })
}

fn v1(uuid: &str, resource: &str, version: i64, modified: &str, document: Value) -> Vec<u8> {
    json!({
        "contractVersion": 1, "documentUuid": uuid, "projectName": "Ed-Fi",
        "resourceName": resource, "resourceVersion": "5.2.0", "contentVersion": version,
        "lastModifiedAt": modified, "document": document
    })
    .to_string()
    .into_bytes()
}

struct Feed {
    translator: Translator,
    memory: Memories,
}

impl Feed {
    fn new() -> Feed {
        Feed { translator: Translator::default(), memory: Memories::default() }
    }

    fn send(&mut self, key: &str, value: Option<Vec<u8>>) -> Translation {
        let t = self
            .translator
            .translate(&mut self.memory, Some(key.as_bytes()), value.as_deref())
            .unwrap();
        for e in &t.events {
            // Every event is valid contract v1.1.
            let decoded = decode::decode(e.json.as_bytes());
            assert!(decoded.is_ok(), "{}: {:?}", e.json, decoded.err());
        }
        t
    }

    /// The events' JSON objects.
    fn events(&mut self, key: &str, value: Option<Vec<u8>>) -> Vec<Value> {
        let t = self.send(key, value);
        assert_eq!(t.outcome, Outcome::Translated, "{t:?}");
        t.events.iter().map(|e| serde_json::from_str(&e.json).unwrap()).collect()
    }
}

/// An event id without its content hash (the last `:` part).
fn cause_of(e: &Value) -> &str {
    let id = e["event_id"].as_str().unwrap();
    let (cause, hash) = id.rsplit_once(':').unwrap();
    assert_eq!(hash.len(), 16, "{id}");
    cause
}

fn statuses(events: &[Value]) -> Vec<(&str, &str)> {
    events.iter().map(|e| (e["date"].as_str().unwrap(), e["status"].as_str().unwrap())).collect()
}

#[test]
fn categories_of_one_day_combine_an_absence_winning_and_a_delete_undoes_its_part() {
    let mut f = Feed::new();
    let e = f.events(
        "u-tardy",
        Some(v1(
            "u-tardy",
            "StudentSchoolAttendanceEvent",
            1,
            "2021-09-08T13:00:00Z",
            attendance("2021-09-08", TARDY),
        )),
    );
    assert_eq!(statuses(&e), [("2021-09-08", "tardy")]);
    assert_eq!(cause_of(&e[0]), "edfi:u-tardy:1:a/2021-09-08");
    assert_eq!(e[0]["student_id"], "604822");
    assert_eq!(e[0]["school_id"], "255901001");
    assert_eq!(e[0]["recorded_at"], "2021-09-08T13:00:00Z");

    let e = f.events(
        "u-abs",
        Some(v1(
            "u-abs",
            "StudentSchoolAttendanceEvent",
            1,
            "2021-09-08T13:00:00Z",
            attendance("2021-09-08", EXCUSED),
        )),
    );
    assert_eq!(statuses(&e), [("2021-09-08", "absent_excused")]);
    assert_eq!(
        e[0]["recorded_at"], "2021-09-08T13:00:00.000001Z",
        "the key's next event is later even when the documents were modified in the same second"
    );

    // Re-coded in Ed-Fi: the excused absence deleted, an unexcused one created.
    let e = f.events("u-abs", None);
    assert_eq!(statuses(&e), [("2021-09-08", "tardy")]);
    assert_eq!(cause_of(&e[0]), "edfi:u-abs:1-deleted:a/2021-09-08");
    let e = f.events(
        "u-unx",
        Some(v1(
            "u-unx",
            "StudentSchoolAttendanceEvent",
            1,
            "2021-09-09T08:00:00Z",
            attendance("2021-09-08", UNEXCUSED),
        )),
    );
    assert_eq!(statuses(&e), [("2021-09-08", "absent_unexcused")]);

    // Both gone: the day is retracted.
    assert!(f.events("u-tardy", None).is_empty(), "the absence still wins");
    let e = f.events("u-unx", None);
    assert_eq!(statuses(&e), [("2021-09-08", "retracted")]);
    assert_eq!(f.send("u-unx", None).outcome, Outcome::Stale, "a repeated tombstone");
}

#[test]
fn content_versions_order_a_document_and_an_unchanged_one_writes_nothing() {
    let mut f = Feed::new();
    let doc = |v, date, cat| {
        Some(v1(
            "u1",
            "StudentSchoolAttendanceEvent",
            v,
            "2021-09-08T13:00:00Z",
            attendance(date, cat),
        ))
    };
    assert_eq!(f.events("u1", doc(5, "2021-09-08", EXCUSED)).len(), 1);
    assert_eq!(f.send("u1", doc(5, "2021-09-08", UNEXCUSED)).outcome, Outcome::Stale);
    assert_eq!(f.send("u1", doc(4, "2021-09-08", UNEXCUSED)).outcome, Outcome::Stale);
    assert!(f.events("u1", doc(6, "2021-09-08", EXCUSED)).is_empty(), "same meaning, new version");
    // A new version moving the event to another day: the old day is retracted.
    let e = f.events("u1", doc(7, "2021-09-09", EXCUSED));
    assert_eq!(statuses(&e), [("2021-09-08", "retracted"), ("2021-09-09", "absent_excused")]);
    assert_eq!(cause_of(&e[0]), "edfi:u1:7:a/2021-09-08");
    assert_eq!(cause_of(&e[1]), "edfi:u1:7:a/2021-09-09");
}

#[test]
fn the_debezium_row_form_reads_like_the_v1_contract() {
    let row = |deleted: &str, modified: Value| {
        json!({
            "id": 42, "documentpartitionkey": 3, "documentuuid": "u-dbz",
            "resourcename": "StudentSchoolAttendanceEvent", "resourceversion": "5.2.0",
            "projectname": "Ed-Fi", "isdescriptor": false,
            "edfidoc": attendance("2021-09-08", UNEXCUSED),
            "lastmodifiedat": modified, "__deleted": deleted
        })
        .to_string()
        .into_bytes()
    };
    let mut f = Feed::new();
    // Debezium's MicroTimestamp: microseconds since the epoch.
    let e = f.events("42", Some(row("false", json!(1_631_106_000_000_000_i64))));
    assert_eq!(statuses(&e), [("2021-09-08", "absent_unexcused")]);
    assert_eq!(e[0]["recorded_at"], "2021-09-08T13:00:00Z");
    assert!(cause_of(&e[0]).starts_with("edfi:u-dbz:m1631106000000000-"), "{}", e[0]);
    assert_eq!(
        f.send("42", Some(row("false", json!("2021-09-08T12:00:00")))).outcome,
        Outcome::Stale
    );
    let e = f.events("42", Some(row("true", json!("2021-09-10T08:00:00Z"))));
    assert_eq!(statuses(&e), [("2021-09-08", "retracted")]);
    assert_eq!(e[0]["recorded_at"], "2021-09-10T08:00:00Z", "the delete's own time");
    for key in ["42", "{\"id\": 42}"] {
        assert_eq!(
            f.send(key, None).outcome,
            Outcome::Skipped("delete of a document never read"),
            "Debezium's tombstone is keyed by the row id, not the documentUuid"
        );
    }
}

/// Without versions, two rows modified in the same second are told apart by their content: the
/// correction is a new event, not a repeat ontrack would skip.
#[test]
fn event_ids_repeat_only_with_the_same_content() {
    let row = |category: &str| {
        json!({
            "documentuuid": "u", "resourcename": "StudentSchoolAttendanceEvent",
            "edfidoc": attendance("2021-09-08", category),
            "lastmodifiedat": "2021-09-08T13:00:00Z", "__deleted": "false"
        })
        .to_string()
        .into_bytes()
    };
    let mut f = Feed::new();
    let first = f.events("u", Some(row(UNEXCUSED)));
    let second = f.events("u", Some(row(EXCUSED)));
    assert_eq!(statuses(&second), [("2021-09-08", "absent_excused")]);
    assert_ne!(first[0]["event_id"], second[0]["event_id"]);
    // The same message from fresh memory: the same id.
    let again = Feed::new().events("u", Some(row(UNEXCUSED)));
    assert_eq!(first, again);
}

#[test]
fn bad_messages_and_unmapped_descriptors_are_rejected_with_a_reason() {
    let mut f = Feed::new();
    let reason = |t: Translation| match t.outcome {
        Outcome::Rejected(r) => r,
        other => panic!("{other:?}"),
    };
    assert!(reason(f.send("k", Some(b"{not json".to_vec()))).starts_with("not a JSON object"));
    assert!(
        reason(f.send("k", Some(b"{\"a\": 1}".to_vec()))).starts_with("neither a DMS CDC message")
    );
    let r = reason(f.send(
        "u",
        Some(v1(
            "u",
            "StudentSchoolAttendanceEvent",
            1,
            "2021-09-08T13:00:00Z",
            attendance(
                "2021-09-08",
                "uri://district.org/AttendanceEventCategoryDescriptor#Field Trip",
            ),
        )),
    ));
    assert!(
        r.starts_with(
            "StudentSchoolAttendanceEvent: attendanceEventCategoryDescriptor \"uri://district.org/"
        ),
        "{r}"
    );
    let r = reason(f.send(
        "u",
        Some(v1(
            "u",
            "StudentSchoolAttendanceEvent",
            1,
            "yesterday",
            attendance("2021-09-08", TARDY),
        )),
    ));
    assert_eq!(r, "lastModifiedAt: not an RFC 3339 time");
    let mut huge: Value = serde_json::from_slice(&v1(
        "u",
        "StudentSchoolAttendanceEvent",
        1,
        "",
        attendance("2021-09-08", TARDY),
    ))
    .unwrap();
    huge["lastModifiedAt"] = json!(i64::MAX);
    let r = reason(f.send("u", Some(huge.to_string().into_bytes())));
    assert_eq!(r, "lastModifiedAt: not an RFC 3339 time", "not a time a record can have");
    let r = reason(f.send(
        "u",
        Some(v1(
            "u",
            "StudentSchoolAttendanceEvent",
            1,
            "2021-09-08T13:00:00Z",
            json!({"eventDate": "2021-09-08"}),
        )),
    ));
    assert_eq!(r, "StudentSchoolAttendanceEvent: studentReference: missing");
    // A rejected message changes nothing: the same document read later is new.
    assert_eq!(
        f.events(
            "u",
            Some(v1(
                "u",
                "StudentSchoolAttendanceEvent",
                1,
                "2021-09-08T13:00:00Z",
                attendance("2021-09-08", TARDY)
            ))
        )
        .len(),
        1
    );

    let t = f.send(
        "s",
        Some(v1("s", "Student", 1, "2021-09-08T13:00:00Z", json!({"studentUniqueId": "1"}))),
    );
    assert_eq!((t.resource, t.outcome), (None, Outcome::Skipped("resource not used")));
    assert_eq!(f.send("never", None).outcome, Outcome::Skipped("delete of a document never read"));
}

fn grade(letter: &str) -> Value {
    json!({
        "gradeTypeDescriptor": "uri://ed-fi.org/GradeTypeDescriptor#Grading Period",
        "gradingPeriodReference": {
            "gradingPeriodDescriptor": "uri://ed-fi.org/GradingPeriodDescriptor#Second Six Weeks",
            "gradingPeriodName": "Second Six Weeks", "schoolId": 255901001, "schoolYear": 2022
        },
        "studentSectionAssociationReference": {
            "beginDate": "2021-08-23", "localCourseCode": "ALG-1-L", "schoolId": 255901001,
            "schoolYear": 2022, "sectionIdentifier": "S1", "sessionName": "2021-2022 Fall Semester",
            "studentUniqueId": "604822"
        },
        "letterGradeEarned": letter
    })
}

fn course(subject: &str) -> Value {
    json!({
        "courseCode": "ALG-1", "courseTitle": "Algebra I", "numberOfParts": 1,
        "educationOrganizationReference": {"educationOrganizationId": 255901},
        "academicSubjects": [{"academicSubjectDescriptor": format!("uri://ed-fi.org/AcademicSubjectDescriptor#{subject}")}]
    })
}

#[test]
fn a_grade_takes_its_subject_from_the_course_catalogue_through_the_offering() {
    let mut f = Feed::new();
    let e = f.events("g1", Some(v1("g1", "Grade", 1, "2021-10-15T16:00:00Z", grade("F"))));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["subject"], "other", "course not known yet");
    assert_eq!(e[0]["course_code"], "ALG-1-L");
    assert_eq!(e[0]["grading_period"], "2022-02-0-Second Six Weeks");
    assert_eq!(e[0]["section_id"], "255901001/2022/2021-2022 Fall Semester/ALG-1-L/S1");
    assert_eq!(e[0]["date"], "2021-10-15");
    assert_eq!(e[0]["letter_grade"], "F");

    // The course is known under its catalogue code; the offering maps the local code to it.
    assert!(
        f.events("c1", Some(v1("c1", "Course", 1, "2021-08-01T00:00:00Z", course("Mathematics"))))
            .is_empty()
    );
    let offering = json!({
        "localCourseCode": "ALG-1-L",
        "courseReference": {"courseCode": "ALG-1", "educationOrganizationId": 255901},
        "schoolReference": {"schoolId": 255901001},
        "sessionReference": {"schoolId": 255901001, "schoolYear": 2022, "sessionName": "2021-2022 Fall Semester"}
    });
    let e = f.events("o1", Some(v1("o1", "CourseOffering", 1, "2021-08-01T00:00:00Z", offering)));
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0]["subject"].as_str(), e[0]["course_code"].as_str()),
        (Some("math"), Some("ALG-1"))
    );
    assert_eq!(
        cause_of(&e[0]),
        "edfi:o1:1:g/255901001/2022/2021-2022 Fall Semester/ALG-1-L/S1/2022-02-0-Second Six Weeks"
    );

    // The course's subject corrected: its grades follow; a corrected grade keeps the subject.
    let e = f.events("c1", Some(v1("c1", "Course", 2, "2021-08-02T00:00:00Z", course("Science"))));
    assert_eq!(e[0]["subject"], "science");
    let e = f.events("g1", Some(v1("g1", "Grade", 2, "2021-10-16T16:00:00Z", grade("C"))));
    assert_eq!(
        (e[0]["subject"].as_str(), e[0]["letter_grade"].as_str()),
        (Some("science"), Some("C"))
    );
    // The grade deleted: retracted, and no longer looked up when the course changes.
    let e = f.events("g1", None);
    assert_eq!(e[0]["retracted"], true);
    assert!(
        f.events("c1", Some(v1("c1", "Course", 3, "2021-08-03T00:00:00Z", course("Mathematics"))))
            .is_empty()
    );
}

#[test]
fn enrollments_calendars_and_discipline_become_their_contract_events() {
    let mut f = Feed::new();
    let ssa = |exit: Option<&str>| {
        let mut d = json!({
            "studentReference": {"studentUniqueId": "604822"}, "schoolReference": {"schoolId": 255901001},
            "entryDate": "2021-08-23", "entryGradeLevelDescriptor": "uri://ed-fi.org/GradeLevelDescriptor#Ninth grade"
        });
        if let Some(x) = exit {
            d["exitWithdrawDate"] = json!(x);
        }
        d
    };
    let e = f.events(
        "e1",
        Some(v1("e1", "StudentSchoolAssociation", 1, "2021-08-16T15:00:00Z", ssa(None))),
    );
    assert_eq!(
        (e[0]["type"].as_str(), e[0]["date"].as_str()),
        (Some("enrollment"), Some("2021-08-23"))
    );
    assert_eq!(e[0]["exit_date"], Value::Null);
    let e = f.events(
        "e1",
        Some(v1(
            "e1",
            "StudentSchoolAssociation",
            2,
            "2021-10-30T15:00:00Z",
            ssa(Some("2021-10-29")),
        )),
    );
    assert_eq!(e[0]["exit_date"], "2021-10-29");

    let day = |event: &str| {
        json!({
            "calendarReference": {"calendarCode": "2022", "schoolId": 255901001, "schoolYear": 2022},
            "date": "2021-09-06",
            "calendarEvents": [{"calendarEventDescriptor": format!("uri://ed-fi.org/CalendarEventDescriptor#{event}")}]
        })
    };
    let t =
        f.send("cal", Some(v1("cal", "CalendarDate", 1, "2021-08-01T09:00:00Z", day("Holiday"))));
    assert_eq!(t.events[0].kind, EventKind::Calendar);
    assert_eq!(t.events[0].key, "255901001", "calendars are keyed by school");
    let e: Value = serde_json::from_str(&t.events[0].json).unwrap();
    assert_eq!((e["instructional"].as_bool(), e.get("student_id")), (Some(false), None));
    // A second calendar of the school makes it a school day there.
    let e = f.events(
        "cal2",
        Some(v1("cal2", "CalendarDate", 1, "2021-08-01T09:00:00Z", day("Instructional day"))),
    );
    assert_eq!(e[0]["instructional"], true);
    assert!(f.events("cal", None).is_empty());
    assert_eq!(f.events("cal2", None)[0]["retracted"], true);

    let action = json!({
        "disciplineActionIdentifier": "7", "disciplineDate": "2021-10-01",
        "studentReference": {"studentUniqueId": "604822"},
        "responsibilitySchoolReference": {"schoolId": 255901001},
        "disciplines": [{"disciplineDescriptor": "uri://ed-fi.org/DisciplineDescriptor#In School Suspension"}]
    });
    let e = f.events("d1", Some(v1("d1", "DisciplineAction", 1, "2021-10-01T15:30:00Z", action)));
    assert_eq!(
        (e[0]["action"].as_str(), e[0]["referral_id"].as_str()),
        (Some("in_school_suspension"), Some("7@2021-10-01"))
    );
    assert_eq!(e[0]["behavior"], "unspecified");
}

#[test]
fn the_same_messages_from_the_same_memory_give_the_same_events() {
    let messages: Vec<(String, Option<Vec<u8>>)> = vec![
        (
            "a".into(),
            Some(v1(
                "a",
                "StudentSchoolAttendanceEvent",
                1,
                "2021-09-08T13:00:00Z",
                attendance("2021-09-08", TARDY),
            )),
        ),
        (
            "b".into(),
            Some(v1(
                "b",
                "StudentSchoolAttendanceEvent",
                1,
                "2021-09-08T13:00:00Z",
                attendance("2021-09-08", EXCUSED),
            )),
        ),
        ("a".into(), None),
        (
            "b".into(),
            Some(v1(
                "b",
                "StudentSchoolAttendanceEvent",
                2,
                "2021-09-08T14:00:00Z",
                attendance("2021-09-09", EXCUSED),
            )),
        ),
    ];
    let run = || {
        let mut f = Feed::new();
        messages.iter().flat_map(|(k, v)| f.send(k, v.clone()).events).collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first.len(), 4);
    assert_eq!(first, run());
}

#[test]
fn a_student_in_a_counselor_list_is_assigned_to_its_counselor() {
    let config = EdfiConfig {
        cohort_types: vec!["uri://ed-fi.org/CohortTypeDescriptor#Counselor List".into()],
        ..EdfiConfig::default()
    };
    let mut f = Feed { translator: Translator::new(Mapping::new(&config).unwrap()), ..Feed::new() };
    let cohort_ref = json!({"cohortIdentifier": "CL-7", "educationOrganizationId": 255901001});
    let member = |end: Option<&str>| {
        let mut d = json!({
            "cohortReference": cohort_ref, "studentReference": {"studentUniqueId": "604822"},
            "beginDate": "2021-08-23"
        });
        if let Some(e) = end {
            d["endDate"] = json!(e);
        }
        d
    };
    let staffing = |end: Option<&str>| {
        let mut d = json!({
            "cohortReference": cohort_ref, "staffReference": {"staffUniqueId": "207219"},
            "beginDate": "2021-08-01"
        });
        if let Some(e) = end {
            d["endDate"] = json!(e);
        }
        d
    };
    let cohort = |kind: &str| {
        json!({
            "cohortIdentifier": "CL-7", "educationOrganizationReference": {"educationOrganizationId": 255901001},
            "cohortTypeDescriptor": format!("uri://ed-fi.org/CohortTypeDescriptor#{kind}")
        })
    };
    let at = "2021-08-20T12:00:00Z";
    // The membership (its end date filled in ahead: not ended) and the cohort's staff come
    // first, the cohort's type last: no advocate until the cohort is a counselor list.
    let ahead = Some("2022-06-30");
    assert!(
        f.events("m", Some(v1("m", "StudentCohortAssociation", 1, at, member(ahead)))).is_empty()
    );
    assert!(
        f.events("sa", Some(v1("sa", "StaffCohortAssociation", 1, at, staffing(None)))).is_empty()
    );
    assert!(f.events("c", Some(v1("c", "Cohort", 1, at, cohort("Study Hall")))).is_empty());
    let e = f.events("c", Some(v1("c", "Cohort", 2, at, cohort("Counselor List"))));
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0]["type"].as_str(), e[0]["advocate_id"].as_str()),
        (Some("assignment"), Some("207219"))
    );
    assert_eq!(e[0]["student_id"], "604822");
    assert_eq!(e[0]["date"], "2021-08-20", "prepared before it begins: dated when it was written");
    assert_eq!(e[0].get("advocate"), None, "contacts come from the district's assignments");
    // The counselor leaves the list: the assignment ends.
    let e = f.events(
        "sa",
        Some(v1(
            "sa",
            "StaffCohortAssociation",
            2,
            "2021-12-01T12:00:00Z",
            staffing(Some("2021-11-30")),
        )),
    );
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["advocate_id"], Value::Null);
    // Ended already: the student leaving the list changes nothing more.
    assert!(
        f.events(
            "m",
            Some(v1(
                "m",
                "StudentCohortAssociation",
                2,
                "2021-12-02T12:00:00Z",
                member(Some("2021-12-01"))
            ))
        )
        .is_empty()
    );
    // Back on the list with a counselor again: assigned again.
    assert!(
        f.events(
            "m",
            Some(v1("m", "StudentCohortAssociation", 3, "2021-12-03T12:00:00Z", member(None)))
        )
        .is_empty()
    );
    let e = f.events(
        "sa",
        Some(v1("sa", "StaffCohortAssociation", 3, "2021-12-04T12:00:00Z", staffing(None))),
    );
    assert_eq!(e[0]["advocate_id"], "207219");

    // Without cohort_types (the default) cohorts are not read.
    let t = Feed::new().send("c", Some(v1("c", "Cohort", 1, at, cohort("Counselor List"))));
    assert_eq!(t.outcome, Outcome::Skipped("cohorts not read ([edfi] cohort_types is empty)"));
}
