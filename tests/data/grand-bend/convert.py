#!/usr/bin/env python3
"""Converts Ed-Fi's Grand Bend sample into ontrack's event contract v1.1 (JSON Lines).

Reads the Ed-Fi XML in /work/shared/edfi-grand-bend/ (or the directory given as the first
argument) and writes events.jsonl next to this script: school calendars, enrollments (with
five transfers and one late entry), attendance (absences and tardies only, as the sample has
them) and discipline actions. Python 3.11, standard library only; the output is deterministic.

Usage: python3 convert.py [EDFI_DIR]
"""

import datetime as dt
import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
EDFI = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/edfi-grand-bend")
OUT = HERE / "events.jsonl"
NS = {"e": "http://ed-fi.org/5.2.0"}
TZ = "-05:00"

# Holidays (weekdays inside a session that are not instructional days). The sample states the
# instructional-day counts of its sessions (Fall 81, Spring 88) but lists no calendar dates, so
# the holidays are chosen to give those counts, among the weekdays on which the sample records no
# attendance and no discipline action at all (so no record falls on a day off).
#   Fall (85 weekdays, 81 instructional): Labor Day 2021-09-06 and Thanksgiving Wed-Fri
#     2021-11-24..26 (also what the Fall grading periods' counts 29 + 25 + 27 imply).
#   Spring (104 weekdays, 88 instructional): a teacher workday after the winter break 2022-01-05,
#     Martin Luther King Jr. Day 2022-01-17, a weather day 2022-02-01, a teacher-only day
#     2022-02-16, spring break 2022-03-14..18, a teacher-only day 2022-04-04, four days of state
#     testing for other grades 2022-04-20, 22, 25, 27, and two teacher-only days 2022-05-19 and
#     2022-05-24. These are exactly the 16 Spring weekdays without any attendance or discipline
#     record in the sample. (Presidents Day 2022-02-21 has 7 attendance records and stays a
#     school day. The Spring grading periods state 33 + 29 + 34 = 96 days, which disagrees with the
#     session's 88; the session's count is used.)
HOLIDAYS = {
    dt.date(2021, 9, 6),
    dt.date(2021, 11, 24),
    dt.date(2021, 11, 25),
    dt.date(2021, 11, 26),
    dt.date(2022, 1, 5),
    dt.date(2022, 1, 17),
    dt.date(2022, 2, 1),
    dt.date(2022, 2, 16),
    *(dt.date(2022, 3, d) for d in range(14, 19)),
    dt.date(2022, 4, 4),
    dt.date(2022, 4, 20),
    dt.date(2022, 4, 22),
    dt.date(2022, 4, 25),
    dt.date(2022, 4, 27),
    dt.date(2022, 5, 19),
    dt.date(2022, 5, 24),
}
CALENDAR_RECORDED = f"2021-08-01T09:00:00{TZ}"

FIRST_DAY = dt.date(2021, 8, 23)
ENROLLMENT_RECORDED = f"2021-08-16T10:00:00{TZ}"

# Transfers: (last day at the old school, where the search for a student starts in the sorted
# list of students with attendance). The student is the first one from that position on with
# attendance records both on/before the last day and after it; from the next day they are
# enrolled at one of the two other schools (sorted): the first for the 1st, 3rd and 5th
# transfer, the second for the 2nd and 4th. Dates vary: a Friday in October, the last day of the
# Fall semester (the new enrollment then starts on the Saturday), a Friday, a Wednesday and a
# Thursday in Spring.
TRANSFERS = [
    (dt.date(2021, 10, 29), 20),
    (dt.date(2021, 12, 17), 65),
    (dt.date(2022, 2, 11), 110),
    (dt.date(2022, 3, 9), 155),
    (dt.date(2022, 4, 14), 200),
]
# Late entry: the first student with attendance (sorted ids), not transferring, whose first
# record of any kind is on or after this date enrolls that day instead of on the first day.
LATE_ENTRY = dt.date(2021, 10, 4)
LATE_ENTRY_RECORDED = f"2021-10-01T10:00:00{TZ}"

ATTENDANCE_STATUS = {
    "Excused Absence": "absent_excused",
    "Unexcused Absence": "absent_unexcused",
    "Tardy": "tardy",
    "In Attendance": "present",
    "Present": "present",
}
# Several categories on one day combine into one status: an absence wins over a tardy, a tardy
# over present. Other categories ("Partial", "Early departure") are not mapped (DESIGN.md: "others
# configurable"); the sample has one "Partial", on a day that also has an "Excused Absence".
STATUS_RANK = {"present": 0, "tardy": 1, "absent_excused": 2, "absent_unexcused": 3}

DISCIPLINE_ACTION = {
    "In School Suspension": "in_school_suspension",
    "Out of School Suspension": "out_of_school_suspension",
    "Expulsion": "expulsion",
    "Expulsion with Services": "expulsion",
    "Expulsion under Guns Free School Act": "expulsion",
    "Expulsion under Guns Free School Act with Services": "expulsion",
    "Removal from Classroom": "none",
    "Community Service": "none",
    "Other": "none",
    "No action for incident": "none",
}


def text(node, path):
    found = node.find(path, NS)
    return None if found is None else found.text.strip()


def code(descriptor):
    """`uri://ed-fi.org/XDescriptor#Code Value` -> `Code Value`."""
    return descriptor.rsplit("#", 1)[1]


def day(s):
    return dt.date.fromisoformat(s)


def read_sessions():
    root = ET.parse(EDFI / "EducationOrgCalendar.xml").getroot()
    sessions = defaultdict(list)
    for s in root.findall("e:Session", NS):
        school = text(s, "e:SchoolReference/e:SchoolIdentity/e:SchoolId")
        sessions[school].append(
            (
                text(s, "e:SessionName"),
                day(text(s, "e:BeginDate")),
                day(text(s, "e:EndDate")),
                int(text(s, "e:TotalInstructionalDays")),
            )
        )
    return sessions


def read_attendance():
    """{(student, date): (school, [categories])} from StudentSchoolAttendanceEvent."""
    root = ET.parse(EDFI / "StudentSchoolAttendance.xml").getroot()
    days = {}
    for ev in root.findall("e:StudentSchoolAttendanceEvent", NS):
        student = text(ev, "e:StudentReference/e:StudentIdentity/e:StudentUniqueId")
        school = text(ev, "e:SchoolReference/e:SchoolIdentity/e:SchoolId")
        date = day(text(ev, "e:AttendanceEvent/e:EventDate"))
        category = code(text(ev, "e:AttendanceEvent/e:AttendanceEventCategory"))
        prev_school, categories = days.setdefault((student, date), (school, []))
        if prev_school != school:
            sys.exit(f"student {student} has records at two schools on {date}")
        categories.append(category)
    return days


def read_discipline():
    root = ET.parse(EDFI / "StudentDiscipline.xml").getroot()
    actions = []
    for a in root.findall("e:DisciplineAction", NS):
        behavior = text(
            a,
            "e:StudentDisciplineIncidentBehaviorAssociationReference/"
            "e:StudentDisciplineIncidentBehaviorAssociationIdentity/e:Behavior",
        )
        length = text(a, "e:DisciplineActionLength")
        actions.append(
            {
                "referral_id": text(a, "e:DisciplineActionIdentifier"),
                "student": text(a, "e:StudentReference/e:StudentIdentity/e:StudentUniqueId"),
                "school": text(a, "e:ResponsibilitySchoolReference/e:SchoolIdentity/e:SchoolId"),
                "date": day(text(a, "e:DisciplineDate")),
                "action": DISCIPLINE_ACTION[code(text(a, "e:Discipline"))],
                "behavior": code(behavior) if behavior else "unknown",
                "action_days": None if length is None else float(length),
            }
        )
    return actions


def weekdays(first, last):
    d = first
    while d <= last:
        if d.weekday() < 5:
            yield d
        d += dt.timedelta(days=1)


def build():
    """The events, in the order a feed delivers them, and what was decided on the way (for
    main's summary and for to_dms.py, which imports this module)."""
    sessions = read_sessions()
    attendance = read_attendance()
    discipline = read_discipline()
    events = []

    # --- calendars, for every school that appears in the attendance file -------------------
    schools = sorted({school for school, _ in attendance.values()})
    for school in schools:
        if school not in sessions:
            sys.exit(f"school {school} has no session in EducationOrgCalendar.xml")
        for name, first, last, stated in sorted(sessions[school], key=lambda s: s[1]):
            school_days = [d for d in weekdays(first, last) if d not in HOLIDAYS]
            if len(school_days) != stated:
                sys.exit(f"{school} {name}: {len(school_days)} school days, sample states {stated}")
            for d in weekdays(first, last):
                events.append(
                    {
                        "type": "calendar",
                        "event_id": f"cal-{school}-{d}",
                        "school_id": school,
                        "date": str(d),
                        "recorded_at": CALENDAR_RECORDED,
                        "instructional": d not in HOLIDAYS,
                    }
                )

    record_dates = {d for _, d in attendance} | {a["date"] for a in discipline}
    if record_dates & HOLIDAYS:
        sys.exit(f"records on holidays: {sorted(map(str, record_dates & HOLIDAYS))}")

    # --- whose school is where ---------------------------------------------------------------
    home = {}  # student -> school of their first record
    first_record = {}  # student -> date of their first record (attendance or discipline)
    records_of = defaultdict(list)  # student -> attendance dates
    by_date = sorted(attendance.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    for (student, date), (school, _) in by_date:
        home.setdefault(student, school)
        first_record.setdefault(student, date)
        records_of[student].append(date)
    for a in sorted(discipline, key=lambda a: (a["date"], a["referral_id"])):
        home.setdefault(a["student"], a["school"])
        if a["date"] < first_record.get(a["student"], dt.date.max):
            first_record[a["student"]] = a["date"]
    with_attendance = sorted(records_of)

    transfers = {}  # student -> (last day at old school, new school)
    for k, (last_day, start) in enumerate(TRANSFERS):
        for student in with_attendance[start:]:
            dates = records_of[student]
            if student not in transfers and min(dates) <= last_day < max(dates):
                others = [s for s in schools if s != home[student]]
                new = others[k % len(others)]
                transfers[student] = (last_day, new)
                break
        else:
            sys.exit(f"no student to transfer on {last_day}")
    late = next(s for s in with_attendance if s not in transfers and first_record[s] >= LATE_ENTRY)

    def school_on(student, date):
        if student in transfers and date > transfers[student][0]:
            return transfers[student][1]
        return home[student]

    # --- enrollments ---------------------------------------------------------------------------
    for student in sorted(home):
        if student == late:
            start, recorded = LATE_ENTRY, LATE_ENTRY_RECORDED
        else:
            start, recorded = FIRST_DAY, ENROLLMENT_RECORDED
        first = {
            "type": "enrollment",
            "event_id": f"enr-{student}-{home[student]}-{start}",
            "student_id": student,
            "school_id": home[student],
            "date": str(start),
            "recorded_at": recorded,
            "exit_date": None,
        }
        events.append(first)
        if student in transfers:
            last_day, new = transfers[student]
            next_day = last_day + dt.timedelta(days=1)
            recorded = f"{next_day}T07:30:00{TZ}"
            # The same enrollment (same natural key) re-sent with its exit date ...
            exit_ = {"event_id": first["event_id"] + "-exit", "recorded_at": recorded}
            events.append(first | exit_ | {"exit_date": str(last_day)})
            # ... and the enrollment at the new school from the next day.
            events.append(
                first
                | {
                    "event_id": f"enr-{student}-{new}-{next_day}",
                    "school_id": new,
                    "date": str(next_day),
                    "recorded_at": recorded,
                }
            )

    # --- attendance ----------------------------------------------------------------------------
    unmapped, skipped = 0, 0
    for (student, date), (_, categories) in attendance.items():
        statuses = [ATTENDANCE_STATUS[c] for c in categories if c in ATTENDANCE_STATUS]
        unmapped += len(categories) - len(statuses)
        if not statuses:
            skipped += 1
            continue
        events.append(
            {
                "type": "attendance",
                "event_id": f"att-{student}-{date}",
                "student_id": student,
                "school_id": school_on(student, date),
                "date": str(date),
                "recorded_at": f"{date}T08:40:00{TZ}",
                "status": max(statuses, key=STATUS_RANK.__getitem__),
            }
        )

    # --- discipline ----------------------------------------------------------------------------
    for a in discipline:
        event = {
            "type": "discipline",
            "event_id": f"dis-{a['student']}-{a['referral_id']}",
            "student_id": a["student"],
            "school_id": school_on(a["student"], a["date"]),
            "date": str(a["date"]),
            "recorded_at": f"{a['date']}T15:30:00{TZ}",
            "referral_id": a["referral_id"],
            "behavior": a["behavior"],
            "action": a["action"],
        }
        if a["action_days"] is not None:
            event["action_days"] = a["action_days"]
        events.append(event)

    # The order a feed delivers them: by recorded_at (all in one offset, so the text sorts as
    # the instant), then event_id.
    events.sort(key=lambda e: (dt.datetime.fromisoformat(e["recorded_at"]), e["event_id"]))
    facts = {
        "schools": schools,
        "home": home,
        "with_attendance": with_attendance,
        "transfers": transfers,
        "late": late,
        "unmapped": unmapped,
        "skipped": skipped,
    }
    return events, facts


def main():
    events, facts = build()
    schools, home, with_attendance = facts["schools"], facts["home"], facts["with_attendance"]
    transfers, late = facts["transfers"], facts["late"]
    unmapped, skipped = facts["unmapped"], facts["skipped"]
    with OUT.open("w", encoding="utf-8", newline="\n") as f:
        for e in events:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")

    kinds = defaultdict(int)
    for e in events:
        kinds[e["type"]] += 1
    per_type = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    print(f"wrote {len(events)} events to {OUT.name}: {per_type}")
    print(f"{len(home)} students ({len(with_attendance)} with attendance), schools {schools}")
    print(f"{unmapped} attendance categories not mapped; {skipped} days with only those left out")
    for student, (last_day, new) in sorted(transfers.items()):
        print(f"transfer: {student} {home[student]} -> {new}, last day {last_day}")
    print(f"late entry: {late} at {home[late]} from {LATE_ENTRY}")


if __name__ == "__main__":
    main()
