#!/usr/bin/env python3
"""Converts Ed-Fi's Grand Bend sample into Ed-Fi Data Management Service (DMS) change messages.

The same calendars, enrollments, attendance and discipline as convert.py's events.jsonl (this
script imports convert.py and builds its events first), as the Ed-Fi documents (data standard
5.2, as the DMS stores them) a DMS instance would publish to Kafka, one message a line in
dms.jsonl: {"key": KEY, "value": VALUE}. Each document is published in one of the two forms the
translator reads, chosen by a hash of its documentUuid (about 2/3 the first):

- the DMS CDC contract v1: KEY the documentUuid, VALUE {"contractVersion": 1, "documentUuid",
  "projectName", "resourceName", "resourceVersion", "contentVersion", "lastModifiedAt",
  "document"}; a delete is a tombstone (VALUE null);
- the legacy Debezium row, flattened: KEY the document's internal id (text), VALUE {"id",
  "documentpartitionkey", "documentuuid", "resourcename", "resourceversion", "projectname",
  "isdescriptor", "edfidoc", "lastmodifiedat" (unix microseconds), "__deleted"}; a delete is the
  last row again with "__deleted": "true" and the delete's time.

On top of the sample the feed carries the things a live DMS feed does (see PERTURBATIONS), each
chosen deterministically and each leaving the final meaning of the documents exactly what
events.jsonl says. Python 3.11, standard library only; the output is deterministic.

Usage: python3 to_dms.py [EDFI_DIR]
"""

import datetime as dt
import hashlib
import json
import sys
import uuid
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ next to the data
import convert  # noqa: E402  (reads sys.argv[1] as the Ed-Fi directory, like this script)

OUT = HERE / "dms.jsonl"
NS = convert.NS
ED_FI = "uri://ed-fi.org/"
PROJECT, VERSION = "Ed-Fi", "5.2.0"
SCHOOL_YEAR = 2022  # Ed-Fi's schoolYear of 2021-2022
# documentUuids are uuid5s of the natural key in this namespace.
UUIDS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ontrack:tests:grand-bend:dms")
UTC = dt.timezone.utc
# Nothing is perturbed after this day (every correction lands before the last school day).
LAST_PERTURBED = dt.date(2022, 5, 20)

# What the non-instructional days are, by the reasons convert.py gives them (all map to "not a
# school day"; Ed-Fi's CalendarEventDescriptor values).
DAY_OFF = {
    dt.date(2022, 1, 5): "Teacher only day",
    dt.date(2022, 2, 1): "Weather day",
    dt.date(2022, 2, 16): "Teacher only day",
    dt.date(2022, 4, 4): "Teacher only day",
    dt.date(2022, 4, 20): "Non-instructional day",
    dt.date(2022, 4, 22): "Non-instructional day",
    dt.date(2022, 4, 25): "Non-instructional day",
    dt.date(2022, 4, 27): "Non-instructional day",
    dt.date(2022, 5, 19): "Teacher only day",
    dt.date(2022, 5, 24): "Teacher only day",
}  # the other holidays (Labor Day, Thanksgiving, MLK Day, spring break): "Holiday"

# The perturbations, by the tag their messages carry (README: "The same, as DMS change
# messages").
PERTURBATIONS = {
    "a": "re-coded absence: first created with the other absence category, then deleted and "
    "the right-category document created",
    "b": "extra Tardy document on an absence day",
    "c": "message re-sent verbatim",
    "d": "updated document: first sent wrong (attendance: the school day before; discipline: "
    "another length), then a new version with the right value",
    "e": "stale version: an updated document's older version re-sent after the update",
    "f": "spurious absence created, then deleted",
    "g": "resource ontrack does not use",
}


def local(date, hhmm):
    """A time of day on `date`, in convert.py's offset, as a UTC datetime."""
    return dt.datetime.fromisoformat(f"{date}T{hhmm}:00{convert.TZ}").astimezone(UTC)


def utc(recorded_at):
    return dt.datetime.fromisoformat(recorded_at).astimezone(UTC)


def doc_uuid(resource, *key):
    return str(uuid.uuid5(UUIDS, "|".join([resource, *map(str, key)])))


def debezium_form(doc_id):
    """About one document in three is published as a Debezium row."""
    return int(hashlib.sha256(doc_id.encode()).hexdigest(), 16) % 3 == 0


def school_year(text):
    """`2021-2022` -> 2022."""
    return int(text.rsplit("-", 1)[1])


def number(text):
    f = float(text)
    return int(f) if f.is_integer() else f


# --- the sample, per XML record ---------------------------------------------------------------


def read_attendance_records():
    root = convert.ET.parse(convert.EDFI / "StudentSchoolAttendance.xml").getroot()
    t = convert.text
    records = []
    for ev in root.findall("e:StudentSchoolAttendanceEvent", NS):
        records.append(
            {
                "student": t(ev, "e:StudentReference/e:StudentIdentity/e:StudentUniqueId"),
                "school": t(ev, "e:SchoolReference/e:SchoolIdentity/e:SchoolId"),
                "session": t(ev, "e:SessionReference/e:SessionIdentity/e:SessionName"),
                "year": school_year(t(ev, "e:SessionReference/e:SessionIdentity/e:SchoolYear")),
                "date": convert.day(t(ev, "e:AttendanceEvent/e:EventDate")),
                "category": convert.code(t(ev, "e:AttendanceEvent/e:AttendanceEventCategory")),
                "reason": t(ev, "e:AttendanceEvent/e:AttendanceEventReason"),
                "duration": t(ev, "e:AttendanceEvent/e:EventDuration"),
                "school_duration": t(ev, "e:SchoolAttendanceDuration"),
                "arrival": t(ev, "e:ArrivalTime"),
            }
        )
    return records


def read_discipline_records():
    root = convert.ET.parse(convert.EDFI / "StudentDiscipline.xml").getroot()
    t = convert.text
    identity = (
        "e:StudentDisciplineIncidentBehaviorAssociationReference/"
        "e:StudentDisciplineIncidentBehaviorAssociationIdentity/"
    )
    incident = identity + "e:DisciplineIncidentReference/e:DisciplineIncidentIdentity/"
    records = []
    for a in root.findall("e:DisciplineAction", NS):
        records.append(
            {
                "id": t(a, "e:DisciplineActionIdentifier"),
                "student": t(a, "e:StudentReference/e:StudentIdentity/e:StudentUniqueId"),
                "school": t(a, "e:ResponsibilitySchoolReference/e:SchoolIdentity/e:SchoolId"),
                "date": convert.day(t(a, "e:DisciplineDate")),
                "discipline": t(a, "e:Discipline"),
                "length": t(a, "e:DisciplineActionLength"),
                "actual": t(a, "e:ActualDisciplineActionLength"),
                "difference": t(a, "e:DisciplineActionLengthDifferenceReason"),
                "iep": t(a, "e:IEPPlacementMeetingIndicator"),
                "behavior": t(a, identity + "e:Behavior"),
                "incident": t(a, incident + "e:IncidentIdentifier"),
                "incident_school": t(a, incident + "e:SchoolReference/e:SchoolIdentity/e:SchoolId"),
                "incident_student": t(
                    a, identity + "e:StudentReference/e:StudentIdentity/e:StudentUniqueId"
                ),
            }
        )
    return records


# --- the feed ---------------------------------------------------------------------------------


class Feed:
    """Documents and the messages about them. A message is delivered at `deliver` (the feed's
    order); its lastModifiedAt is its version's (a re-sent message keeps its own)."""

    def __init__(self):
        self.docs = {}  # documentUuid -> {"resource", "debezium", "versions": [(at, body)]}
        self.messages = []

    def upsert(self, doc_id, resource, body, at, tag, deliver=None):
        doc = self.docs.setdefault(
            doc_id, {"resource": resource, "debezium": debezium_form(doc_id), "versions": []}
        )
        if doc["resource"] != resource:
            sys.exit(f"documentUuid {doc_id} of two resources")
        if doc.get("deleted"):
            sys.exit(f"document {doc_id} written after its delete")
        if doc["versions"] and at <= doc["versions"][-1][0]:
            sys.exit(f"document {doc_id}: a new version not later than the last")
        doc["versions"].append((at, body))
        return self._add(doc_id, "upsert", len(doc["versions"]), at, tag, deliver)

    def delete(self, doc_id, at, tag):
        doc = self.docs[doc_id]
        if at <= doc["versions"][-1][0]:
            sys.exit(f"document {doc_id}: deleted before its last version")
        doc["deleted"] = True
        return self._add(doc_id, "delete", len(doc["versions"]), at, tag, None)

    def resend(self, message, deliver, tag):
        return self._add(
            message["uuid"], message["op"], message["version"], message["at"], tag, deliver
        )

    def _add(self, doc_id, op, version, at, tag, deliver):
        m = {
            "uuid": doc_id,
            "op": op,
            "version": version,  # contentVersion (a delete: the last version's)
            "at": at,
            "deliver": deliver or at,
            "seq": len(self.messages),
            "tag": tag,
        }
        self.messages.append(m)
        return m

    def ordered(self):
        return sorted(self.messages, key=lambda m: (m["deliver"], m["seq"]))

    def render(self):
        """The lines, in the feed's order; internal ids by first appearance."""
        ids = {}
        lines = []
        for m in self.ordered():
            doc = self.docs[m["uuid"]]
            ids.setdefault(m["uuid"], len(ids) + 1)
            at, body = doc["versions"][m["version"] - 1]
            at = m["at"] if m["op"] == "delete" else at
            if doc["debezium"]:
                key = str(ids[m["uuid"]])
                value = {
                    "id": ids[m["uuid"]],
                    "documentpartitionkey": 0,
                    "documentuuid": m["uuid"],
                    "resourcename": doc["resource"],
                    "resourceversion": VERSION,
                    "projectname": PROJECT,
                    "isdescriptor": False,
                    "edfidoc": body,
                    "lastmodifiedat": int(at.timestamp()) * 1_000_000,
                    "__deleted": "true" if m["op"] == "delete" else "false",
                }
            elif m["op"] == "delete":
                key, value = m["uuid"], None
            else:
                key = m["uuid"]
                value = {
                    "contractVersion": 1,
                    "documentUuid": m["uuid"],
                    "projectName": PROJECT,
                    "resourceName": doc["resource"],
                    "resourceVersion": VERSION,
                    "contentVersion": m["version"],
                    "lastModifiedAt": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "document": body,
                }
            lines.append(json.dumps({"key": key, "value": value}, separators=(",", ":")))
        return lines


# --- documents --------------------------------------------------------------------------------


def attendance_doc(student, school, session, date, category, record=None):
    body = {
        "studentReference": {"studentUniqueId": student},
        "schoolReference": {"schoolId": int(school)},
        "sessionReference": {
            "schoolId": int(school),
            "schoolYear": SCHOOL_YEAR,
            "sessionName": session,
        },
        "eventDate": str(date),
        "attendanceEventCategoryDescriptor": f"{ED_FI}AttendanceEventCategoryDescriptor#{category}",
    }
    reason = {"Excused Absence": "Absent excused", "Unexcused Absence": "Absent unexcused"}
    if record is None:  # a document of the feed's own (perturbations a, b, f)
        body["attendanceEventReason"] = reason.get(category, category)
        if category in reason:  # the sample gives its absences a duration, its tardies none
            body["eventDuration"] = 1
    else:
        body["attendanceEventReason"] = record["reason"]
        if record["duration"] is not None:
            body["eventDuration"] = number(record["duration"])
        if record["school_duration"] is not None:
            body["schoolAttendanceDuration"] = int(record["school_duration"])
        if record["arrival"] is not None:
            body["arrivalTime"] = record["arrival"]
    key = (student, school, SCHOOL_YEAR, session, date, category)
    return doc_uuid("StudentSchoolAttendanceEvent", *key), body


def discipline_doc(r, school, length=None):
    def length_of(text):
        return number(text) if length is None else length

    body = {
        "disciplineActionIdentifier": r["id"],
        "disciplineDate": str(r["date"]),
        "studentReference": {"studentUniqueId": r["student"]},
        "responsibilitySchoolReference": {"schoolId": int(school)},
        "disciplines": [{"disciplineDescriptor": r["discipline"]}],
    }
    if r["length"] is not None:
        body["disciplineActionLength"] = length_of(r["length"])
    if r["actual"] is not None:
        body["actualDisciplineActionLength"] = length_of(r["actual"])
    if r["difference"] is not None:
        body["disciplineActionLengthDifferenceReasonDescriptor"] = r["difference"]
    if r["iep"] is not None:
        body["iepPlacementMeetingIndicator"] = r["iep"] in ("1", "true")
    body["studentDisciplineIncidentBehaviorAssociations"] = [
        {
            "studentDisciplineIncidentBehaviorAssociationReference": {
                "behaviorDescriptor": r["behavior"],
                "incidentIdentifier": r["incident"],
                "schoolId": int(r["incident_school"]),
                "studentUniqueId": r["incident_student"],
            }
        }
    ]
    key = (r["id"], r["date"], r["student"])
    return doc_uuid("DisciplineAction", *key), body


def enrollment_doc(student, school, entry, exit_date=None):
    body = {
        "studentReference": {"studentUniqueId": student},
        "schoolReference": {"schoolId": int(school)},
        "entryDate": entry,
        "entryGradeLevelDescriptor": f"{ED_FI}GradeLevelDescriptor#Ninth grade",
    }
    if exit_date is not None:
        body["exitWithdrawDate"] = exit_date
    return doc_uuid("StudentSchoolAssociation", student, school, entry), body


def calendar_doc(school, date, instructional):
    d = dt.date.fromisoformat(date)
    event = "Instructional day" if instructional else DAY_OFF.get(d, "Holiday")
    code = f"{school}-{SCHOOL_YEAR}"
    body = {
        "calendarReference": {
            "calendarCode": code,
            "schoolId": int(school),
            "schoolYear": SCHOOL_YEAR,
        },
        "date": date,
        "calendarEvents": [{"calendarEventDescriptor": f"{ED_FI}CalendarEventDescriptor#{event}"}],
    }
    return doc_uuid("CalendarDate", code, school, SCHOOL_YEAR, date), body


# --- the conversion ---------------------------------------------------------------------------


def main():
    events, facts = convert.build()
    if not DAY_OFF.keys() <= convert.HOLIDAYS:
        sys.exit("DAY_OFF names a day that is not one of convert.HOLIDAYS")
    sessions = convert.read_sessions()
    records = read_attendance_records()
    actions = read_discipline_records()
    feed = Feed()

    def session_of(school, date):
        for name, first, last, _ in sessions[school]:
            if first <= date <= last:
                return name
        sys.exit(f"{date} is in no session of {school}")

    # What events.jsonl says, by natural key.
    of_type = defaultdict(list)
    for e in events:
        of_type[e["type"]].append(e)
    attendance = {(e["student_id"], e["date"]): e for e in of_type["attendance"]}
    discipline = {(e["student_id"], e["referral_id"]): e for e in of_type["discipline"]}
    calendar = {(e["school_id"], e["date"]): e for e in of_type["calendar"]}
    enrollments = defaultdict(dict)  # student -> (school, entry) -> last event (exit dates)
    for e in events:
        if e["type"] == "enrollment":
            enrollments[e["student_id"]][(e["school_id"], e["date"])] = e

    def school_on(student, date):
        """The school the student is enrolled at on `date` (None: none)."""
        for (school, entry), e in enrollments[student].items():
            end = e["exit_date"] or "9999-12-31"
            if entry <= str(date) <= end:
                return school
        return None

    def school_day(school, date):
        e = calendar.get((school, str(date)))
        return e is not None and e["instructional"]

    # --- g: resources ontrack does not use, before everything else -------------------------
    for school in facts["schools"]:
        for name, first, last, stated in sessions[school]:
            term = name.split(" ", 1)[1]  # "2021-2022 Fall Semester" -> "Fall Semester"
            body = {
                "sessionName": name,
                "schoolReference": {"schoolId": int(school)},
                "schoolYearTypeReference": {"schoolYear": SCHOOL_YEAR},
                "beginDate": str(first),
                "endDate": str(last),
                "termDescriptor": f"{ED_FI}TermDescriptor#{term}",
                "totalInstructionalDays": stated,
            }
            at = utc(convert.CALENDAR_RECORDED) - dt.timedelta(minutes=10)
            feed.upsert(doc_uuid("Session", school, SCHOOL_YEAR, name), "Session", body, at, "g")
        body = {
            "calendarCode": f"{school}-{SCHOOL_YEAR}",
            "schoolReference": {"schoolId": int(school)},
            "schoolYearTypeReference": {"schoolYear": SCHOOL_YEAR},
            "calendarTypeDescriptor": f"{ED_FI}CalendarTypeDescriptor#School",
            "gradeLevels": [],
        }
        at = utc(convert.CALENDAR_RECORDED) - dt.timedelta(minutes=5)
        code = f"{school}-{SCHOOL_YEAR}"
        feed.upsert(doc_uuid("Calendar", code, school, SCHOOL_YEAR), "Calendar", body, at, "g")
    # A few students (the documents carry the id only: no names, no birth dates), one of them
    # deleted again the next day.
    students = sorted(facts["home"])
    for i, student in enumerate(students[::30]):
        at = utc(convert.ENROLLMENT_RECORDED) - dt.timedelta(minutes=10)
        doc_id = doc_uuid("Student", student)
        feed.upsert(doc_id, "Student", {"studentUniqueId": student}, at, "g")
        if i == 3:
            feed.delete(doc_id, at + dt.timedelta(days=1), "g")

    # --- calendars and enrollments, as events.jsonl has them --------------------------------
    for e in events:
        if e["type"] == "calendar":
            doc_id, body = calendar_doc(e["school_id"], e["date"], e["instructional"])
            feed.upsert(doc_id, "CalendarDate", body, utc(e["recorded_at"]), "base")
    enrollment_messages = []
    for e in events:
        if e["type"] != "enrollment":
            continue
        doc_id, body = enrollment_doc(e["student_id"], e["school_id"], e["date"], e["exit_date"])
        tag = "base" if e["exit_date"] is None else "transfer"
        at = utc(e["recorded_at"])
        enrollment_messages.append(feed.upsert(doc_id, "StudentSchoolAssociation", body, at, tag))
    # e: two transfers' first enrollments re-sent in their first version (no exit date) after it.
    transfer_updates = [m for m in enrollment_messages if m["tag"] == "transfer"]
    for m in transfer_updates[1::2]:
        first = next(x for x in enrollment_messages if x["uuid"] == m["uuid"])
        feed.resend(first, m["deliver"] + dt.timedelta(hours=3), "e")

    # --- attendance: one document per XML record --------------------------------------------
    by_day = defaultdict(list)
    for r in records:
        by_day[(r["student"], str(r["date"]))].append(r)
    for (student, date), day_records in by_day.items():
        e = attendance[(student, date)]
        for r in day_records:
            if session_of(e["school_id"], r["date"]) != r["session"] or r["year"] != SCHOOL_YEAR:
                sys.exit(f"record of {student} on {date}: another session")
    used = set(by_day)  # (student, date) with a record or a perturbation's document
    absences = ("Excused Absence", "Unexcused Absence")
    other_absence = dict(zip(absences, reversed(absences)))
    chosen = Counter()

    def eligible(r):
        return (
            len(by_day[(r["student"], str(r["date"]))]) == 1
            and r["date"] <= LAST_PERTURBED
            and r["date"].weekday() < 5
        )

    def wrong_day(r, school):
        """The school day before the record's, if the student has nothing on it, is enrolled
        at the same school on it and is not before the session's start."""
        d = r["date"] - dt.timedelta(days=1)
        while d >= convert.FIRST_DAY and not school_day(school, d):
            d -= dt.timedelta(days=1)
        if d < convert.FIRST_DAY or (r["student"], str(d)) in used:
            return None
        return d if school_on(r["student"], d) == school else None

    ordered = sorted(records, key=lambda r: (r["date"], r["student"], r["category"]))
    for i, r in enumerate(ordered):
        student, date, category = r["student"], r["date"], r["category"]
        e = attendance[(student, str(date))]
        school = e["school_id"]
        session = r["session"]
        recorded = utc(e["recorded_at"])
        doc_id, body = attendance_doc(student, school, session, date, category, r)
        kind = None
        if i % 41 == 3 and eligible(r) and category in absences:
            kind = "a"
        elif i % 41 == 17 and eligible(r) and category in absences:
            kind = "b"
        elif i % 41 == 29 and eligible(r) and wrong_day(r, school):
            kind = "d"
        chosen[kind] += 1
        if kind is None:
            feed.upsert(doc_id, "StudentSchoolAttendanceEvent", body, recorded, "base")
        elif kind == "a":
            wrong = other_absence[category]
            wrong_id, wrong_body = attendance_doc(student, school, session, date, wrong)
            feed.upsert(wrong_id, "StudentSchoolAttendanceEvent", wrong_body, recorded, "a")
            feed.delete(wrong_id, local(date, "13:05"), "a")
            feed.upsert(doc_id, "StudentSchoolAttendanceEvent", body, local(date, "13:06"), "a")
        elif kind == "b":
            feed.upsert(doc_id, "StudentSchoolAttendanceEvent", body, recorded, "base")
            tardy_id, tardy_body = attendance_doc(student, school, session, date, "Tardy")
            at = local(date, "08:25" if chosen["b"] % 2 else "09:05")
            feed.upsert(tardy_id, "StudentSchoolAttendanceEvent", tardy_body, at, "b")
        else:  # d
            before = wrong_day(r, school)
            used.add((student, str(before)))
            early = dict(body, eventDate=str(before))
            early["sessionReference"] = dict(
                body["sessionReference"], sessionName=session_of(school, before)
            )
            first = feed.upsert(doc_id, "StudentSchoolAttendanceEvent", early, recorded, "d")
            update = feed.upsert(
                doc_id, "StudentSchoolAttendanceEvent", body, local(date, "11:30"), "d"
            )
            if chosen["d"] % 2 == 0:  # e: the first version again, after the update
                feed.resend(first, update["deliver"] + dt.timedelta(hours=3, minutes=30), "e")

    # f: spurious absences on school days without a record, deleted the same morning.
    spurious = 0
    for i, r in enumerate(ordered):
        if i % 67 != 11:
            continue
        d = r["date"]
        for _ in range(10):
            d += dt.timedelta(days=1)
            school = school_on(r["student"], d)
            if (
                d <= LAST_PERTURBED
                and school is not None
                and school_day(school, d)
                and (r["student"], str(d)) not in used
            ):
                break
        else:
            continue
        used.add((r["student"], str(d)))
        category = absences[spurious % 2]
        doc_id, body = attendance_doc(r["student"], school, session_of(school, d), d, category)
        feed.upsert(doc_id, "StudentSchoolAttendanceEvent", body, local(d, "08:40"), "f")
        feed.delete(doc_id, local(d, "10:20"), "f")
        spurious += 1

    # --- discipline ---------------------------------------------------------------------------
    for i, r in enumerate(sorted(actions, key=lambda a: (a["date"], a["student"], a["id"]))):
        e = discipline[(r["student"], r["id"])]
        if e["date"] != str(r["date"]):
            sys.exit(f"discipline {r['id']}: dates differ")
        doc_id, body = discipline_doc(r, e["school_id"])
        recorded = utc(e["recorded_at"])
        if i % 8 != 2:
            feed.upsert(doc_id, "DisciplineAction", body, recorded, "base")
            continue
        # d: first sent with a length two days longer, corrected the next weekday.
        _, wrong = discipline_doc(r, e["school_id"], number(r["length"]) + 2)
        first = feed.upsert(doc_id, "DisciplineAction", wrong, recorded, "d")
        fixed = r["date"] + dt.timedelta(days=1)
        while fixed.weekday() >= 5:
            fixed += dt.timedelta(days=1)
        update = feed.upsert(doc_id, "DisciplineAction", body, local(fixed, "09:00"), "d")
        if i % 16 == 2:  # e
            feed.resend(first, update["deliver"] + dt.timedelta(hours=3), "e")

    # --- c: re-sent messages ------------------------------------------------------------------
    # Every 37th message, again 2 hours later, unless another message about the same document
    # comes in between (then it would be a stale version, e).
    delay = dt.timedelta(hours=2)
    base = feed.ordered()
    by_doc = defaultdict(list)
    for m in base:
        by_doc[m["uuid"]].append(m["deliver"])
    for i, m in enumerate(base):
        if i % 37 != 19:
            continue
        if any(m["deliver"] < t <= m["deliver"] + delay for t in by_doc[m["uuid"]]):
            continue
        feed.resend(m, m["deliver"] + delay, "c")

    lines = feed.render()
    with OUT.open("w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")

    # --- summary ------------------------------------------------------------------------------
    print(f"wrote {len(lines)} messages about {len(feed.docs)} documents to {OUT.name}")
    messages = feed.ordered()

    def form(m):
        return "Debezium" if feed.docs[m["uuid"]]["debezium"] else "v1"

    for name in ("v1", "Debezium"):
        of = [m for m in messages if form(m) == name]
        docs = {m["uuid"] for m in of}
        deletes = sum(m["op"] == "delete" for m in of)
        print(f"  {name}: {len(of)} messages ({deletes} deletes) about {len(docs)} documents")
    resources = defaultdict(list)
    for m in messages:
        resources[feed.docs[m["uuid"]]["resource"]].append(m)
    for name, of in sorted(resources.items()):
        docs = {m["uuid"] for m in of}
        print(f"  {name}: {len(of)} messages about {len(docs)} documents")
    for tag in ["base", "transfer", *PERTURBATIONS]:
        of = [m for m in messages if m["tag"] == tag]
        by_resource = Counter(feed.docs[m["uuid"]]["resource"] for m in of)
        ops = Counter(m["op"] for m in of)
        print(
            f"  {tag}: {len(of)} messages ({dict(sorted(ops.items()))}) about "
            f"{len({m['uuid'] for m in of})} documents; {dict(sorted(by_resource.items()))}"
        )
    print(f"  attendance records chosen: {dict(sorted((k, v) for k, v in chosen.items() if k))}")

if __name__ == "__main__":
    main()
