//! Ed-Fi documents (data standard 5, as the DMS stores them) → what each means to ontrack: the
//! natural key of contract v1.1 it contributes to (a [`SlotKey`]) and its [`Part`] of it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::mapping::{Mapped, Mapping};
use crate::core::decode::parse_date;
use crate::core::event::{AttendanceStatus, DisciplineAction, Subject};

/// The Ed-Fi resources ontrack reads; every other one is skipped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resource {
    StudentSchoolAttendanceEvent,
    DisciplineAction,
    Grade,
    StudentSchoolAssociation,
    CalendarDate,
    Course,
    CourseOffering,
    Cohort,
    StaffCohortAssociation,
    StudentCohortAssociation,
}

impl Resource {
    pub const ALL: [Resource; 10] = [
        Resource::StudentSchoolAttendanceEvent,
        Resource::DisciplineAction,
        Resource::Grade,
        Resource::StudentSchoolAssociation,
        Resource::CalendarDate,
        Resource::Course,
        Resource::CourseOffering,
        Resource::Cohort,
        Resource::StaffCohortAssociation,
        Resource::StudentCohortAssociation,
    ];

    /// A DMS `resourceName` (case-insensitive; a plural path segment is accepted too).
    pub fn of(name: &str) -> Option<Resource> {
        // A path form (`ed-fi/studentSchoolAttendanceEvents`) names the resource last.
        let name = name.rsplit('/').next().unwrap_or(name).trim();
        Resource::ALL.into_iter().find(|r| {
            let n = r.name();
            name.eq_ignore_ascii_case(n)
                || (name.len() == n.len() + 1
                    && name.get(..n.len()).is_some_and(|stem| stem.eq_ignore_ascii_case(n))
                    && name.ends_with(['s', 'S']))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Resource::StudentSchoolAttendanceEvent => "StudentSchoolAttendanceEvent",
            Resource::DisciplineAction => "DisciplineAction",
            Resource::Grade => "Grade",
            Resource::StudentSchoolAssociation => "StudentSchoolAssociation",
            Resource::CalendarDate => "CalendarDate",
            Resource::Course => "Course",
            Resource::CourseOffering => "CourseOffering",
            Resource::Cohort => "Cohort",
            Resource::StaffCohortAssociation => "StaffCohortAssociation",
            Resource::StudentCohortAssociation => "StudentCohortAssociation",
        }
    }
}

/// A natural key that documents contribute to. Student keys are contract v1.1's natural keys
/// (`Assignment`: a student's advocate, from the cohorts the student is in); `Course` and
/// `Offering` are the course catalogue, which grades look their subject up in; `Cohort` and
/// `CohortStaff` what assignments look their advocate up in. (Stored: new variants go last.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SlotKey {
    Attendance { student: String, date: String },
    Discipline { student: String, referral: String },
    Grade { student: String, section: String, period: String },
    Enrollment { student: String, school: String, entry: String },
    Calendar { school: String, date: String },
    Course { code: String },
    Offering { school: String, year: String, session: String, local: String },
    Assignment { student: String },
    Cohort { organization: String, cohort: String },
    CohortStaff { organization: String, cohort: String },
}

impl SlotKey {
    /// The stored form (JSON: any text in the ids survives).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("slot keys always serialize")
    }

    pub fn decode(text: &str) -> Option<SlotKey> {
        serde_json::from_str(text).ok()
    }

    /// The part of an event id that tells this key's events apart within one document version
    /// (event ids are unique per student; calendars per school).
    pub fn tag(&self) -> String {
        match self {
            SlotKey::Attendance { date, .. } => format!("a/{date}"),
            SlotKey::Discipline { referral, .. } => format!("d/{referral}"),
            SlotKey::Grade { section, period, .. } => format!("g/{section}/{period}"),
            SlotKey::Enrollment { school, entry, .. } => format!("e/{school}/{entry}"),
            SlotKey::Calendar { school, date } => format!("c/{school}/{date}"),
            SlotKey::Assignment { .. } => "s".to_owned(),
            // Catalogue entries write no events of their own.
            _ => String::new(),
        }
    }

    /// What the keys depending on this catalogue entry (grades, assignments) are indexed under
    /// (`None`: not a catalogue entry).
    pub fn catalogue_dependency(&self) -> Option<String> {
        matches!(
            self,
            SlotKey::Course { .. }
                | SlotKey::Offering { .. }
                | SlotKey::Cohort { .. }
                | SlotKey::CohortStaff { .. }
        )
        .then(|| self.encode())
    }
}

/// One document's contribution to its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Part {
    Attendance {
        school: String,
        status: AttendanceStatus,
    },
    Discipline {
        school: String,
        date: String,
        behavior: String,
        action: DisciplineAction,
        days: Option<f64>,
    },
    Grade {
        school: String,
        date: String,
        year: String,
        session: String,
        local_course: String,
        letter: Option<String>,
        numeric: Option<f64>,
    },
    Enrollment {
        exit: Option<String>,
    },
    Calendar {
        school_day: bool,
    },
    Course {
        organization: String,
        subject: Subject,
    },
    Offering {
        course: String,
    },
    /// A cohort, with its `cohortTypeDescriptor` (whether that makes it a caseload is decided
    /// when assignments are worked out, by `[edfi] cohort_types` as configured then).
    Cohort {
        kind: String,
    },
    /// A staff member's association with a cohort.
    CohortStaff {
        staff: String,
        begin: String,
        ended: bool,
    },
    /// A student's membership in a cohort; `date`: the day it begins, or the day it was last
    /// modified if that is earlier (a list prepared ahead moves no student into next year).
    Membership {
        organization: String,
        cohort: String,
        begin: String,
        date: String,
        ended: bool,
    },
}

/// What a document version means: a contribution, or nothing (with why).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per message, moved once
pub enum Reading {
    Part(SlotKey, Part),
    /// Understood, and contributes nothing (a descriptor mapped to `ignore`, a grade type not
    /// counted, a mark that is neither A–F nor 0–100).
    Nothing(&'static str),
}

/// Reads one document; `Err` says what is wrong with it (for the dead-letter reason: field
/// names and descriptors, never values about a student).
pub fn read(
    resource: Resource,
    doc: &Value,
    modified_date: &str,
    mapping: &Mapping,
) -> Result<Reading, String> {
    let d = Doc(doc);
    match resource {
        Resource::StudentSchoolAttendanceEvent => {
            let student = d.text(&["studentReference", "studentUniqueId"])?;
            let school = d.id(&["schoolReference", "schoolId"])?;
            let date = d.date(&["eventDate"])?;
            let category = d.text(&["attendanceEventCategoryDescriptor"])?;
            match mapping.attendance(&category) {
                None => Err(unmapped("attendanceEventCategoryDescriptor", &category, "attendance")),
                Some(Mapped::Ignore) => Ok(Reading::Nothing("attendance category ignored")),
                Some(Mapped::To(status)) => Ok(Reading::Part(
                    SlotKey::Attendance { student, date },
                    Part::Attendance { school, status },
                )),
            }
        }
        Resource::DisciplineAction => {
            let student = d.text(&["studentReference", "studentUniqueId"])?;
            let identifier = d.text(&["disciplineActionIdentifier"])?;
            let date = d.date(&["disciplineDate"])?;
            let school = d
                .id(&["responsibilitySchoolReference", "schoolId"])
                .or_else(|_| d.id(&["assignmentSchoolReference", "schoolId"]))?;
            let mut action = None;
            let disciplines = d.array(&["disciplines"])?;
            for (i, item) in disciplines.iter().enumerate() {
                let descriptor = Doc(item)
                    .text(&["disciplineDescriptor"])
                    .map_err(|e| format!("disciplines[{i}].{e}"))?;
                match mapping.discipline(&descriptor) {
                    None => {
                        return Err(unmapped("disciplineDescriptor", &descriptor, "discipline"));
                    }
                    Some(Mapped::Ignore) => {}
                    Some(Mapped::To(a)) => action = action.max(Some(a)),
                }
            }
            let Some(action) = action else {
                return Ok(Reading::Nothing("discipline actions ignored"));
            };
            let days = ["actualDisciplineActionLength", "disciplineActionLength"]
                .iter()
                .find_map(|f| doc.get(f).and_then(Value::as_f64))
                .filter(|d| *d >= 0.0 && d.is_finite());
            Ok(Reading::Part(
                SlotKey::Discipline { student, referral: format!("{identifier}@{date}") },
                Part::Discipline { school, date, behavior: behavior(doc), action, days },
            ))
        }
        Resource::Grade => {
            let grade_type = d.text(&["gradeTypeDescriptor"])?;
            let Some(rank) = mapping.grade_type(&grade_type) else {
                return Ok(Reading::Nothing("grade type not counted"));
            };
            let at = |field: &'static str| ["studentSectionAssociationReference", field];
            let student = d.text(&at("studentUniqueId"))?;
            let school = d.id(&at("schoolId"))?;
            let year = d.id(&at("schoolYear"))?;
            let session = d.text(&at("sessionName"))?;
            let local_course = d.text(&at("localCourseCode"))?;
            let section_id = d.text(&at("sectionIdentifier"))?;
            let begin = d.date(&at("beginDate"))?;
            let gp = "gradingPeriodReference";
            let period_name = d
                .text(&[gp, "gradingPeriodName"])
                .or_else(|_| d.text(&[gp, "gradingPeriodDescriptor"]))?;
            let period_name = period_name.rsplit('#').next().unwrap_or(&period_name).to_owned();
            let period_year = d.id(&[gp, "schoolYear"]).unwrap_or_else(|_| year.clone());
            // Data standard 5.2 keeps no `periodSequence` in the reference: the order of the
            // periods then comes from the ordinal in the name ("Second Six Weeks").
            let sequence = d
                .id(&[gp, "periodSequence"])
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .or_else(|| ordinal(&period_name))
                .unwrap_or(0);
            let letter = doc
                .get("letterGradeEarned")
                .and_then(Value::as_str)
                .map(|l| l.trim().to_uppercase())
                .filter(|l| valid_letter(l));
            let numeric = doc
                .get("numericGradeEarned")
                .and_then(Value::as_f64)
                .filter(|n| (0.0..=100.0).contains(n));
            if letter.is_none() && numeric.is_none() {
                return Ok(Reading::Nothing("grade is neither an A-F letter nor 0-100"));
            }
            // The date a grade was posted: when it was last modified, if that falls in the
            // grade's school year (Ed-Fi's `schoolYear` 2022 = July 2021 to June 2022); else
            // (a back-loaded year) the day the student joined the section.
            let date = match year.parse::<i32>() {
                Ok(y)
                    if *modified_date >= *format!("{:04}-07-01", y - 1)
                        && *modified_date <= *format!("{y:04}-06-30") =>
                {
                    modified_date.to_owned()
                }
                _ => begin,
            };
            Ok(Reading::Part(
                SlotKey::Grade {
                    student,
                    section: format!("{school}/{year}/{session}/{local_course}/{section_id}"),
                    period: format!("{period_year}-{sequence:02}-{rank}-{period_name}"),
                },
                Part::Grade { school, date, year, session, local_course, letter, numeric },
            ))
        }
        Resource::StudentSchoolAssociation => {
            let student = d.text(&["studentReference", "studentUniqueId"])?;
            let school = d.id(&["schoolReference", "schoolId"])?;
            let entry = d.date(&["entryDate"])?;
            let exit = match doc.get("exitWithdrawDate") {
                None | Some(Value::Null) => None,
                Some(_) => Some(d.date(&["exitWithdrawDate"])?),
            };
            Ok(Reading::Part(
                SlotKey::Enrollment { student, school, entry },
                Part::Enrollment { exit },
            ))
        }
        Resource::CalendarDate => {
            let school = d.id(&["calendarReference", "schoolId"])?;
            let date = d.date(&["date"])?;
            let mut school_day = false;
            for (i, item) in d.array(&["calendarEvents"])?.iter().enumerate() {
                let descriptor = Doc(item)
                    .text(&["calendarEventDescriptor"])
                    .map_err(|e| format!("calendarEvents[{i}].{e}"))?;
                match mapping.school_day(&descriptor) {
                    None => {
                        return Err(unmapped(
                            "calendarEventDescriptor",
                            &descriptor,
                            "calendar_events",
                        ));
                    }
                    Some(day) => school_day |= day,
                }
            }
            Ok(Reading::Part(SlotKey::Calendar { school, date }, Part::Calendar { school_day }))
        }
        Resource::Course => {
            let code = d.text(&["courseCode"])?;
            let organization =
                d.id(&["educationOrganizationReference", "educationOrganizationId"])?;
            // `academicSubjects[]` (data standard 5) or one `academicSubjectDescriptor` (4): a
            // course with a core subject among its subjects counts as that subject.
            let mut descriptors = Vec::new();
            if let Some(list) = doc.get("academicSubjects").and_then(Value::as_array) {
                for (i, item) in list.iter().enumerate() {
                    let descriptor = Doc(item)
                        .text(&["academicSubjectDescriptor"])
                        .map_err(|e| format!("academicSubjects[{i}].{e}"))?;
                    descriptors.push(descriptor);
                }
            }
            if doc.get("academicSubjectDescriptor").is_some_and(|v| !v.is_null()) {
                descriptors.push(d.text(&["academicSubjectDescriptor"])?);
            }
            let mut subject = Subject::Other;
            for descriptor in &descriptors {
                let s = mapping
                    .subject(descriptor)
                    .ok_or_else(|| unmapped("academicSubjectDescriptor", descriptor, "subjects"))?;
                if subject == Subject::Other {
                    subject = s;
                }
            }
            Ok(Reading::Part(SlotKey::Course { code }, Part::Course { organization, subject }))
        }
        Resource::Cohort
        | Resource::StaffCohortAssociation
        | Resource::StudentCohortAssociation
            if !mapping.reads_cohorts() =>
        {
            Ok(Reading::Nothing("cohorts not read ([edfi] cohort_types is empty)"))
        }
        Resource::Cohort => {
            let organization =
                d.id(&["educationOrganizationReference", "educationOrganizationId"])?;
            let cohort = d.text(&["cohortIdentifier"])?;
            let kind = d.text(&["cohortTypeDescriptor"])?;
            Ok(Reading::Part(SlotKey::Cohort { organization, cohort }, Part::Cohort { kind }))
        }
        Resource::StaffCohortAssociation | Resource::StudentCohortAssociation => {
            let organization = d.id(&["cohortReference", "educationOrganizationId"])?;
            let cohort = d.text(&["cohortReference", "cohortIdentifier"])?;
            let begin = d.date(&["beginDate"])?;
            // Ended: an end date the SIS wrote on or after that day (one filled in ahead, e.g.
            // the last day of the year, has not ended yet).
            let ended = match doc.get("endDate") {
                None | Some(Value::Null) => false,
                Some(_) => *d.date(&["endDate"])? <= *modified_date,
            };
            if resource == Resource::StaffCohortAssociation {
                let staff = d.text(&["staffReference", "staffUniqueId"])?;
                Ok(Reading::Part(
                    SlotKey::CohortStaff { organization, cohort },
                    Part::CohortStaff { staff, begin, ended },
                ))
            } else {
                let student = d.text(&["studentReference", "studentUniqueId"])?;
                let date = begin.clone().min(modified_date.to_owned());
                Ok(Reading::Part(
                    SlotKey::Assignment { student },
                    Part::Membership { organization, cohort, begin, date, ended },
                ))
            }
        }
        Resource::CourseOffering => {
            let local = d.text(&["localCourseCode"])?;
            let school = d.id(&["schoolReference", "schoolId"])?;
            let session = d.text(&["sessionReference", "sessionName"])?;
            let year = d.id(&["sessionReference", "schoolYear"])?;
            let course = d.text(&["courseReference", "courseCode"])?;
            Ok(Reading::Part(
                SlotKey::Offering { school, year, session, local },
                Part::Offering { course },
            ))
        }
    }
}

fn unmapped(field: &str, descriptor: &str, section: &str) -> String {
    format!("{field} {descriptor:?} has no mapping: add it under [edfi.{section}] in the config")
}

/// The ordinal a grading period's name starts with ("Third Six Weeks" → 3, "Spring Semester"
/// → 3, "End of Year" → 99).
fn ordinal(name: &str) -> Option<u32> {
    const WORDS: [&str; 12] = [
        "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
        "tenth", "eleventh", "twelfth",
    ];
    let lower = name.to_lowercase();
    // The year's own periods come after all of its parts.
    if lower.starts_with("end of") || lower.starts_with("year") || lower.starts_with("final") {
        return Some(99);
    }
    let first = lower.split_whitespace().next()?.to_owned();
    if let Some(i) = WORDS.iter().position(|w| *w == first) {
        return u32::try_from(i + 1).ok();
    }
    match first.as_str() {
        "fall" | "autumn" => return Some(1),
        "winter" => return Some(2),
        "spring" => return Some(3),
        "summer" => return Some(4),
        _ => {}
    }
    let digits: String = first.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `A`–`F`, with an optional `+` or `-` (the contract's letter grades).
fn valid_letter(l: &str) -> bool {
    let b = l.as_bytes();
    matches!(b.first(), Some(b'A'..=b'F'))
        && (b.len() == 1 || (b.len() == 2 && matches!(b[1], b'+' | b'-')))
}

/// The behavior code of the incident the action answers (the descriptor's code value), from
/// data standard 5's behavior associations or 4's incident associations.
fn behavior(doc: &Value) -> String {
    let code = |v: &Value| v.as_str().map(|d| d.rsplit('#').next().unwrap_or(d).trim().to_owned());
    let from = |list: &str, reference: &str| {
        doc.get(list)?.as_array()?.iter().find_map(|item| {
            let r = item.get(reference)?;
            r.get("behaviorDescriptor").and_then(code)
        })
    };
    from(
        "studentDisciplineIncidentBehaviorAssociations",
        "studentDisciplineIncidentBehaviorAssociationReference",
    )
    .or_else(|| {
        from(
            "studentDisciplineIncidentAssociations",
            "studentDisciplineIncidentAssociationReference",
        )
    })
    .filter(|c| !c.is_empty())
    .unwrap_or_else(|| "unspecified".to_owned())
}

/// Field access with errors that name the path.
struct Doc<'a>(&'a Value);

impl Doc<'_> {
    fn at(&self, path: &[&str]) -> Result<&Value, String> {
        let mut v = self.0;
        for (i, field) in path.iter().enumerate() {
            v = match v.get(field) {
                Some(next) if !next.is_null() => next,
                _ => return Err(format!("{}: missing", path[..=i].join("."))),
            };
        }
        Ok(v)
    }

    fn text(&self, path: &[&str]) -> Result<String, String> {
        match self.at(path)?.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(_) => Err(format!("{}: empty", path.join("."))),
            None => Err(format!("{}: not a string", path.join("."))),
        }
    }

    /// An identifier that Ed-Fi writes as a number (`schoolId`) or a string.
    fn id(&self, path: &[&str]) -> Result<String, String> {
        match self.at(path)? {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            _ => Err(format!("{}: not an identifier (a whole number or a string)", path.join("."))),
        }
    }

    fn date(&self, path: &[&str]) -> Result<String, String> {
        let text = self.text(path)?;
        // Ed-Fi dates are `YYYY-MM-DD`; a date-time is cut to its date.
        let day = text.get(..10).unwrap_or(&text);
        match parse_date(day) {
            Some(_) if text.len() == 10 || text.as_bytes().get(10) == Some(&b'T') => {
                Ok(day.to_owned())
            }
            _ => Err(format!("{}: not a date (YYYY-MM-DD)", path.join("."))),
        }
    }

    fn array(&self, path: &[&str]) -> Result<&Vec<Value>, String> {
        match self.at(path)?.as_array() {
            Some(a) if !a.is_empty() => Ok(a),
            Some(_) => Err(format!("{}: empty", path.join("."))),
            None => Err(format!("{}: not an array", path.join("."))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_one(resource: Resource, doc: Value) -> Result<Reading, String> {
        read(resource, &doc, "2021-09-08", &Mapping::default())
    }

    #[test]
    fn resource_names_match_case_insensitively_and_in_the_plural() {
        assert_eq!(Resource::of("Grade"), Some(Resource::Grade));
        assert_eq!(Resource::of("grades"), Some(Resource::Grade));
        assert_eq!(
            Resource::of("studentSchoolAttendanceEvents"),
            Some(Resource::StudentSchoolAttendanceEvent)
        );
        assert_eq!(Resource::of("Student"), None);
        assert_eq!(Resource::of("ed-fi/calendarDates"), Some(Resource::CalendarDate));
        assert_eq!(Resource::of("Gradex"), None);
        assert_eq!(Resource::of("Gradé"), None, "a name cut inside a character is no panic");
    }

    #[test]
    fn an_attendance_event_reads_as_its_student_day() {
        let r = read_one(
            Resource::StudentSchoolAttendanceEvent,
            json!({
                "studentReference": {"studentUniqueId": "604822"},
                "schoolReference": {"schoolId": 255901001},
                "sessionReference": {"schoolId": 255901001, "schoolYear": 2022, "sessionName": "Fall"},
                "eventDate": "2021-09-08",
                "attendanceEventCategoryDescriptor": "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Unexcused Absence"
            }),
        );
        assert_eq!(
            r,
            Ok(Reading::Part(
                SlotKey::Attendance { student: "604822".into(), date: "2021-09-08".into() },
                Part::Attendance {
                    school: "255901001".into(),
                    status: AttendanceStatus::AbsentUnexcused
                }
            ))
        );
    }

    #[test]
    fn errors_name_the_field_or_the_descriptor() {
        let e = read_one(
            Resource::StudentSchoolAttendanceEvent,
            json!({"studentReference": {}, "schoolReference": {"schoolId": 1}}),
        );
        assert_eq!(e, Err("studentReference.studentUniqueId: missing".into()));
        let e = read_one(
            Resource::StudentSchoolAttendanceEvent,
            json!({
                "studentReference": {"studentUniqueId": "1"},
                "schoolReference": {"schoolId": 1},
                "eventDate": "2021-09-08",
                "attendanceEventCategoryDescriptor": "uri://district.org/AttendanceEventCategoryDescriptor#Field Trip"
            }),
        )
        .unwrap_err();
        assert!(
            e.contains("\"uri://district.org/AttendanceEventCategoryDescriptor#Field Trip\""),
            "{e}"
        );
        assert!(e.contains("[edfi.attendance]"), "{e}");
        let e = read_one(
            Resource::CalendarDate,
            json!({"calendarReference": {"schoolId": 1}, "date": "2021-13-01", "calendarEvents": []}),
        );
        assert_eq!(e, Err("date: not a date (YYYY-MM-DD)".into()));
    }

    #[test]
    fn a_discipline_action_takes_its_most_severe_discipline_and_its_behavior_code() {
        let r = read_one(
            Resource::DisciplineAction,
            json!({
                "disciplineActionIdentifier": "DA-7",
                "disciplineDate": "2021-10-01",
                "studentReference": {"studentUniqueId": "604822"},
                "responsibilitySchoolReference": {"schoolId": 255901001},
                "disciplines": [
                    {"disciplineDescriptor": "uri://ed-fi.org/DisciplineDescriptor#Community Service"},
                    {"disciplineDescriptor": "uri://ed-fi.org/DisciplineDescriptor#Out of School Suspension"}
                ],
                "actualDisciplineActionLength": 2,
                "studentDisciplineIncidentBehaviorAssociations": [{
                    "studentDisciplineIncidentBehaviorAssociationReference": {
                        "behaviorDescriptor": "uri://ed-fi.org/BehaviorDescriptor#School Code of Conduct",
                        "incidentIdentifier": "7", "schoolId": 255901001, "studentUniqueId": "604822"
                    }
                }]
            }),
        );
        assert_eq!(
            r,
            Ok(Reading::Part(
                SlotKey::Discipline {
                    student: "604822".into(),
                    referral: "DA-7@2021-10-01".into()
                },
                Part::Discipline {
                    school: "255901001".into(),
                    date: "2021-10-01".into(),
                    behavior: "School Code of Conduct".into(),
                    action: DisciplineAction::OutOfSchoolSuspension,
                    days: Some(2.0),
                }
            ))
        );
    }

    fn grade(letter: Value, numeric: Value, grade_type: &str) -> Value {
        json!({
            "gradeTypeDescriptor": format!("uri://ed-fi.org/GradeTypeDescriptor#{grade_type}"),
            "gradingPeriodReference": {
                "gradingPeriodDescriptor": "uri://ed-fi.org/GradingPeriodDescriptor#First Six Weeks",
                "periodSequence": 1, "schoolId": 255901001, "schoolYear": 2022
            },
            "studentSectionAssociationReference": {
                "beginDate": "2021-08-23", "localCourseCode": "ALG-1", "schoolId": 255901001,
                "schoolYear": 2022, "sectionIdentifier": "25590100102Trad220ALG112011",
                "sessionName": "2021-2022 Fall Semester", "studentUniqueId": "604822"
            },
            "letterGradeEarned": letter,
            "numericGradeEarned": numeric
        })
    }

    #[test]
    fn grades_keep_a_valid_letter_or_number_and_skip_what_is_neither() {
        let Ok(Reading::Part(
            SlotKey::Grade { period, .. },
            Part::Grade { letter, numeric, date, .. },
        )) = read_one(Resource::Grade, grade(json!("d+"), json!(68.5), "Grading Period"))
        else {
            panic!("not a grade");
        };
        assert_eq!((letter.as_deref(), numeric), (Some("D+"), Some(68.5)));
        assert_eq!(period, "2022-01-0-First Six Weeks");
        assert_eq!(date, "2021-09-08", "modified inside the school year: the posting date");
        let Ok(Reading::Part(_, Part::Grade { letter, numeric, .. })) =
            read_one(Resource::Grade, grade(json!("P"), json!(59), "Grading Period"))
        else {
            panic!("not a grade");
        };
        assert_eq!((letter, numeric), (None, Some(59.0)));
        assert_eq!(
            read_one(Resource::Grade, grade(json!("P"), Value::Null, "Grading Period")),
            Ok(Reading::Nothing("grade is neither an A-F letter nor 0-100"))
        );
        assert_eq!(
            read_one(Resource::Grade, grade(json!("F"), Value::Null, "Progress Report")),
            Ok(Reading::Nothing("grade type not counted"))
        );
        let Ok(Reading::Part(SlotKey::Grade { period, .. }, Part::Grade { date, .. })) = read(
            Resource::Grade,
            &grade(json!("F"), Value::Null, "Final"),
            "2024-10-28",
            &Mapping::default(),
        ) else {
            panic!("not a grade");
        };
        assert_eq!(period, "2022-01-1-First Six Weeks", "a final grade outranks the period's");
        assert_eq!(date, "2021-08-23", "modified years later: the section's begin date");
    }

    #[test]
    fn grading_periods_order_by_the_ordinal_in_their_names() {
        let names = [
            "First Six Weeks",
            "Second Six Weeks",
            "Sixth Six Weeks",
            "Fall Semester",
            "Spring Semester",
            "End of Year",
            "Year Round",
            "Q3",
        ];
        assert_eq!(
            names.map(ordinal),
            [1, 2, 6, 1, 3, 99, 99, 0].map(Some).map(|o| o.filter(|n| *n > 0))
        );
    }

    #[test]
    fn a_calendar_date_is_a_school_day_when_any_of_its_events_is() {
        let doc = |events: &[&str]| {
            json!({
                "calendarReference": {"calendarCode": "2022", "schoolId": 255901001, "schoolYear": 2022},
                "date": "2021-09-06",
                "calendarEvents": events.iter().map(|e| json!({
                    "calendarEventDescriptor": format!("uri://ed-fi.org/CalendarEventDescriptor#{e}")
                })).collect::<Vec<_>>()
            })
        };
        let day = |events| match read_one(Resource::CalendarDate, doc(events)) {
            Ok(Reading::Part(_, Part::Calendar { school_day })) => school_day,
            other => panic!("{other:?}"),
        };
        assert!(!day(&["Holiday"]));
        assert!(day(&["Instructional day", "Student late arrival/early dismissal"]));
        assert!(read_one(Resource::CalendarDate, doc(&["Pep Rally"])).is_err());
    }
}
