//! The pure core's speed over a synthetic district of 100,000 students: decode, fold + rules,
//! and both together; then the same district sending absences only (contract v1.1: calendars,
//! enrollments, figures from expected days): a whole school day folded, and the day passing on
//! its own (the students it can change re-evaluated), per student-day.
//!
//! The fold benches run on live state, as the service does: 40 school days of history are folded
//! in first, then every iteration folds the next school day, so each event meets a student with a
//! growing history. Generating a day is not timed; for `fold_rules` decoding is not timed either.
//! Days differ in size (grades are posted every 30 days), so each day's time is scaled to the
//! size of the first measured day, which the reported throughput is per.
//!
//! `cargo bench --bench core`. Under `cargo test` (no `--bench` argument) it runs once on a tiny
//! district, only to keep it working.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ontrack::core::{Event, Outcome, Rules, Students, decode};
use ontrack::synth::{District, DistrictSpec, Feed};

const WARM_DAYS: u32 = 40;

fn apply(states: &mut Students, event: &Event, rules: &Rules) -> usize {
    match states.apply(event, rules) {
        Outcome::Applied(changes) => changes.len(),
        Outcome::Duplicate => 0,
    }
}

/// A district with `WARM_DAYS` of history folded in, and the generator for the days after.
struct Live {
    district: District,
    states: Students,
    next_day: u32,
    rules: Rules,
}

impl Live {
    fn new(students: u32) -> Live {
        Live::of(students, Feed::Positive)
    }

    fn of(students: u32, feed: Feed) -> Live {
        let spec = DistrictSpec { students, days: 200, feed, ..DistrictSpec::default() };
        let mut live = Live {
            district: District::new(spec),
            states: Students::default(),
            next_day: 0,
            rules: Rules::default(),
        };
        while live.next_day < WARM_DAYS {
            for m in live.next_messages() {
                if let Ok(e) = decode(&m) {
                    apply(&mut live.states, &e, &live.rules);
                }
            }
        }
        live
    }

    fn next_messages(&mut self) -> Vec<Vec<u8>> {
        let day = self.district.day(self.next_day);
        assert!(!day.is_empty(), "the district ran out of school days");
        self.next_day += 1;
        day.into_iter().map(|e| e.json.into_bytes()).collect()
    }
}

fn core(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let students = if full { 100_000 } else { 500 };
    let mut live = Live::new(students);
    // One school day: one attendance record per student, plus referrals, corrections, re-sends.
    let sample_day = live.next_messages();
    let nominal = sample_day.len() as f64;

    let mut g = c.benchmark_group("core");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    // One day per sample, and next to no warm-up: the fold benches then fold the 42nd to about
    // the 52nd school day, ordinary days (no grade posting), the same days for both.
    g.warm_up_time(Duration::from_millis(1));
    g.measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(sample_day.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            for m in &sample_day {
                let _ = black_box(decode(black_box(m)));
            }
        })
    });
    g.bench_function("fold_rules", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let messages = live.next_messages();
                let events: Vec<Event> = messages.iter().filter_map(|m| decode(m).ok()).collect();
                let start = Instant::now();
                let mut flags = 0;
                for e in &events {
                    flags += apply(&mut live.states, e, &live.rules);
                }
                timed += start.elapsed().mul_f64(nominal / events.len() as f64);
                black_box(flags);
            }
            timed
        })
    });
    // Fresh history, so both fold benches fold the same school days.
    let mut live = Live::new(students);
    live.next_messages();
    g.bench_function("decode_fold_rules", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let messages = live.next_messages();
                let start = Instant::now();
                let mut flags = 0;
                for m in &messages {
                    if let Ok(e) = decode(m) {
                        flags += apply(&mut live.states, &e, &live.rules);
                    }
                }
                timed += start.elapsed().mul_f64(nominal / messages.len() as f64);
                black_box(flags);
            }
            timed
        })
    });
    g.finish();

    // Absence-only: a school day is a few thousand absences and tardies, and the day passing.
    let mut live = Live::of(students, Feed::AbsenceOnly);
    let mut g = c.benchmark_group("absence_only");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(1));
    g.measurement_time(Duration::from_secs(1));
    // Per student-day, as the positive district's one event per student and day.
    g.throughput(Throughput::Elements(u64::from(students)));
    g.bench_function("school_day", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let messages = live.next_messages();
                let events: Vec<Event> = messages.iter().filter_map(|m| decode(m).ok()).collect();
                let start = Instant::now();
                let mut flags = 0;
                for e in &events {
                    flags += apply(&mut live.states, e, &live.rules);
                }
                timed += start.elapsed();
                black_box(flags);
            }
            timed
        })
    });
    // The day passing alone: the last school day folded closes (what the next day's first
    // records, or `replay --as-of`, do), the students it can change re-evaluated; then the next
    // day's records are folded, not timed.
    let mut live = Live::of(students, Feed::AbsenceOnly);
    g.bench_function("day_passes", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let last = live.district.dates()[live.next_day as usize - 1];
                let start = Instant::now();
                let changes = live.states.close_through(last, &live.rules);
                timed += start.elapsed();
                black_box(changes.len());
                for m in live.next_messages() {
                    if let Ok(e) = decode(&m) {
                        apply(&mut live.states, &e, &live.rules);
                    }
                }
            }
            timed
        })
    });
    g.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
