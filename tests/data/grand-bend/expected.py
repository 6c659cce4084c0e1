#!/usr/bin/env python3
"""The final flags of every student in events.jsonl, computed independently of ontrack.

Written from the words of DESIGN.md ("Event contract v1", "Contract v1.1", "Rules v1"), not
from ontrack's code, to check `ontrack replay --as-of` against. Only the final figures are
computed, so only the flags those figures decide are written: a figure inside a hysteresis band
leaves the flag in whatever state its history gave it, which any order of events may change
(DESIGN.md, Guarantees: Determinism).

Writes expected.json: {student_id: {flag: true (raised) | false (not raised)}}, decided flags only.
Python 3.11, standard library only.

Usage: python3 expected.py [--as-of YYYY-MM-DD] [--events FILE] [--out FILE] [--figures]
  --figures  also print every student's figures as JSON lines (for investigating a difference)
"""

import argparse
import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
YEAR_STARTS = (7, 1)  # a school year starts on July 1
CORE = {"ela", "math", "science", "social_studies"}
FLAGS = ("attendance", "consecutive_absences", "behavior", "course_performance", "off_track")


def school_year(d):
    first = d.year if (d.month, d.day) >= YEAR_STARTS else d.year - 1
    return f"{first}-{first + 1}"


def version(e):
    """Last writer wins: the greatest recorded_at, ties the greater event_id."""
    return (dt.datetime.fromisoformat(e["recorded_at"]), e["event_id"])


def natural_key(e):
    t = e["type"]
    if t == "calendar":
        return (t, e["school_id"], e["date"])
    if t == "attendance":
        return (t, e["student_id"], e["date"])
    if t == "discipline":
        return (t, e["student_id"], e["referral_id"])
    if t == "grade":
        return (t, e["student_id"], e["section_id"], e["grading_period"])
    if t == "enrollment":
        return (t, e["student_id"], e["school_id"], e["date"])
    if t == "assignment":
        return (t, e["student_id"])
    raise ValueError(f"unknown type {t}")


def retracted(e):
    if e["type"] == "attendance":
        return e["status"] == "retracted"
    return e.get("retracted") is True


def winners(events):
    """The winning record per natural key; a duplicate event_id changes nothing."""
    seen = set()
    won = {}
    for e in events:
        # Calendars have no student: their event_ids are unique across the topic.
        scope = "calendar" if e["type"] == "calendar" else e["student_id"]
        dup_key = (scope, e["event_id"])
        if dup_key in seen:
            continue
        seen.add(dup_key)
        k = natural_key(e)
        if k not in won or version(e) > version(won[k]):
            won[k] = e
    return won


def mark(g):
    """'F', 'D' or None for a grade record."""
    letter = g.get("letter_grade")
    if letter:
        return letter[0] if letter[0] in "FD" else None
    n = g.get("numeric_grade")
    if n is None:
        return None
    return "F" if n < 60 else "D" if n < 70 else None


def figures_of(records, school_days, as_of):
    """The Rules v1 / contract v1.1 figures of one student from their live winning records."""
    if not records:
        return None
    year = max(school_year(dt.date.fromisoformat(r["date"])) for r in records)
    this_year = [r for r in records if school_year(dt.date.fromisoformat(r["date"])) == year]
    by_type = defaultdict(list)
    for r in this_year:
        by_type[r["type"]].append(r)
    attendance = {dt.date.fromisoformat(r["date"]): r["status"] for r in by_type["attendance"]}
    enrollments = [r for r in records if r["type"] == "enrollment"]
    if enrollments:
        # Expected days: each enrollment's school's instructional days within it (date ..
        # exit_date), up to the as-of day, in this school year; plus every date with an
        # attendance record.
        expected = set(attendance)
        for r in enrollments:
            first = dt.date.fromisoformat(r["date"])
            last = dt.date.fromisoformat(r["exit_date"]) if r.get("exit_date") else dt.date.max
            for d in school_days.get(r["school_id"], ()):
                if first <= d <= last and d <= as_of and school_year(d) == year:
                    expected.add(d)
    else:
        expected = set(attendance)  # v1: the dates with a record
    days_enrolled = len(expected)
    days_absent = sum(1 for s in attendance.values() if s.startswith("absent_"))
    # Absences in a row, back from the latest expected day; a day without a record is present.
    # (v1, without enrollments: the latest records; none at all is streak 0, "cleared".)
    streak = 0
    for d in sorted(expected, reverse=True):
        if not attendance.get(d, "present").startswith("absent_"):
            break
        streak += 1
    referrals = by_type["discipline"]
    suspensions = [
        r
        for r in referrals
        if r["action"] in ("in_school_suspension", "out_of_school_suspension", "expulsion")
    ]
    # Grades: a section's current mark is its record with the greatest grading_period.
    sections = {}
    for g in by_type["grade"]:
        current = sections.get(g["section_id"])
        if current is None or g["grading_period"] > current["grading_period"]:
            sections[g["section_id"]] = g
    core_marks = [mark(g) for g in sections.values() if g["subject"] in CORE]
    return {
        "school_year": year,
        "days_enrolled": days_enrolled,
        "days_absent": days_absent,
        "absence_rate": days_absent / days_enrolled if days_enrolled else 0.0,
        "streak": streak,
        "referrals": len(referrals),
        "suspensions": len(suspensions),
        "core_f": core_marks.count("F"),
        "core_d_or_f": core_marks.count("F") + core_marks.count("D"),
    }


def decided_flags(f):
    """The flags the final figures decide: True raised, False not raised; others left out."""
    out = {}
    # attendance: raised at days_enrolled >= 10 and rate >= 10%; cleared below 9% or under 10 days.
    if f["days_enrolled"] >= 10 and f["absence_rate"] >= 0.10:
        out["attendance"] = True
    elif f["absence_rate"] < 0.09 or f["days_enrolled"] < 10:
        out["attendance"] = False
    # consecutive_absences: the latest three expected days all absences / the latest not one.
    if f["streak"] >= 3:
        out["consecutive_absences"] = True
    elif f["streak"] == 0:
        out["consecutive_absences"] = False
    # behavior and course_performance: raise and clear are complements, so always decided.
    out["behavior"] = f["suspensions"] >= 1 or f["referrals"] >= 3
    out["course_performance"] = f["core_f"] >= 1 or f["core_d_or_f"] >= 2
    # off_track: >= 2 of the three ABC flags raised, known only when all three are.
    abc = ("attendance", "behavior", "course_performance")
    if all(k in out for k in abc):
        out["off_track"] = sum(out[k] for k in abc) >= 2
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--as-of", default="2022-05-27", type=dt.date.fromisoformat)
    ap.add_argument("--events", default=HERE / "events.jsonl", type=Path)
    ap.add_argument("--out", default=HERE / "expected.json", type=Path)
    ap.add_argument("--figures", action="store_true")
    args = ap.parse_args()

    with args.events.open(encoding="utf-8") as f:
        events = [json.loads(line) for line in f if line.strip()]
    won = winners(events)

    school_days = defaultdict(set)
    live = defaultdict(list)  # student -> live winning records
    for k, e in won.items():
        if retracted(e):
            continue
        if e["type"] == "calendar":
            if e["instructional"]:
                school_days[e["school_id"]].add(dt.date.fromisoformat(e["date"]))
        elif e["type"] != "assignment":
            live[e["student_id"]].append(e)
    students = sorted({e["student_id"] for e in events if e["type"] != "calendar"})

    expected = {}
    figures = {}
    for s in students:
        f = figures_of(live.get(s, []), school_days, args.as_of)
        if f is None:  # nothing live: no figures, no flag raised
            expected[s] = dict.fromkeys(FLAGS, False)
            continue
        figures[s] = f
        expected[s] = decided_flags(f)
    if args.figures:
        for s, f in figures.items():
            print(json.dumps({"student_id": s, **f}))

    with args.out.open("w", encoding="utf-8", newline="\n") as out:
        # One student per line, so a change reads as a diff of students.
        lines = [f"{json.dumps(s)}: {json.dumps(expected[s], sort_keys=True)}" for s in expected]
        out.write("{\n" + ",\n".join(lines) + "\n}\n")

    with_attendance = {e["student_id"] for e in events if e["type"] == "attendance"}

    def count(flag, value, among=students):
        return sum(1 for s in among if expected[s].get(flag) is value)

    def undecided(flag):
        return sum(1 for s in students if flag not in expected[s])

    n_att = len(with_attendance)
    print(f"as of {args.as_of}: {len(students)} students, {n_att} with attendance records")
    print(
        f"attendance (chronically absent): {count('attendance', True)} raised "
        f"({count('attendance', True, with_attendance)} of the {n_att} with attendance), "
        f"{count('attendance', False)} not raised, {undecided('attendance')} in the 9-10% band"
    )
    print(
        f"consecutive_absences: {count('consecutive_absences', True)} raised, "
        f"{count('consecutive_absences', False)} not raised, "
        f"{undecided('consecutive_absences')} undecided (streaks of 1-2)"
    )
    print(
        f"behavior: {count('behavior', True)} raised; "
        f"course_performance: {count('course_performance', True)} raised"
    )
    print(
        f"off_track: {count('off_track', True)} raised, {count('off_track', False)} not raised, "
        f"{undecided('off_track')} undecided"
    )


if __name__ == "__main__":
    main()
