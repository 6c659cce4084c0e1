//! The `ontrack` binary: parses the command line and hands over to the library.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use ontrack::core::Rules;
use ontrack::replay::replay_as_of;
use ontrack::synth::{District, DistrictSpec, Feed};

/// mimalloc instead of glibc's allocator: reading states back from the store allocates and frees
/// many small buffers, where glibc spent a fifth of the time (`malloc_consolidate`, `_int_free`);
/// measured with `ontrack-bench fold`: 20,000 students 167k → 191k events/s, 100,000 students
/// 55k → 66k events/s, for 50–90 MiB more resident memory (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "ontrack",
    version,
    about = "Live early-warning flags for students at risk of dropping out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The service: consume the SIS topics, keep student state, publish flag events.
    Run {
        /// Config file (TOML); every key is optional, and ONTRACK__SECTION__KEY variables
        /// override it (e.g. ONTRACK__KAFKA__BROKERS).
        #[arg(long, value_name = "FILE.toml")]
        config: Option<PathBuf>,
        /// Kafka bootstrap servers (kafka.brokers) [default: 127.0.0.1:9092].
        #[arg(long, value_name = "HOST:PORT")]
        brokers: Option<String>,
        /// Where the state store lives (data_dir) [default: ./data].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address of /metrics, /healthz and /readyz (admin.addr) [default: 127.0.0.1:9898].
        #[arg(long, value_name = "HOST:PORT")]
        admin_addr: Option<String>,
        /// Log lines as JSON objects (for log shippers) or human-readable text.
        #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
        log_format: LogFormat,
    },
    /// The embedded default: an in-process Kafka, a synthetic district streamed in school day by
    /// school day through the service, flag changes printed as they happen. Needs nothing but
    /// cargo.
    Demo {
        #[command(flatten)]
        district: DistrictArgs,
    },
    /// Run the rules offline over a JSON-Lines export of events (back-testing).
    Replay {
        /// Events, one JSON object per line, any type; `-` reads standard input.
        #[arg(long, value_name = "FILE.jsonl")]
        events: PathBuf,
        /// Where the flag events go, in emission order; `-` writes standard output.
        #[arg(long, value_name = "FLAGS.jsonl")]
        out: PathBuf,
        /// Rules file (TOML); every key is optional and defaults to DESIGN.md's rules.
        #[arg(long, value_name = "FILE.toml")]
        rules: Option<PathBuf>,
        /// Where rejected lines go, with their line number and reason
        /// [default: FLAGS.jsonl.rejected].
        #[arg(long, value_name = "FILE")]
        dead_letter: Option<PathBuf>,
        /// At the end of the input, close every school day up to this date (YYYY-MM-DD), as if
        /// the days had passed: back-testing "as of the end of the year" for districts that
        /// send enrollments and calendars (contract v1.1).
        #[arg(long, value_name = "DATE", value_parser = parse_date_arg)]
        as_of: Option<time::Date>,
    },
    /// Produce a seeded synthetic district into the input topics (load tests, benchmarks): as
    /// fast as possible, or at a fixed rate; each message's Kafka timestamp is its produce time.
    Loadgen {
        #[command(flatten)]
        district: DistrictArgs,
        /// Kafka bootstrap servers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Events per second; 0 for as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Stop after this many seconds (default: the whole district).
        #[arg(long)]
        seconds: Option<f64>,
        /// The first school day to produce (0-based): the district's earlier days are made but
        /// not sent, e.g. a live stream that goes on from a history produced before.
        #[arg(long, default_value_t = 0)]
        from_day: u32,
        /// Prefix of the topic names (`PREFIX.sis.attendance`, …); default: the plain names.
        #[arg(long, default_value = "")]
        topic_prefix: String,
        /// Only the students whose partition (xxh3-64 of the student id modulo --of) is one of
        /// these, each sent to it: e.g. a backlog into 2,3 and a live stream into 0,1.
        #[arg(long, value_delimiter = ',', requires = "of")]
        partitions: Vec<i32>,
        /// The topics' partition count, for --partitions.
        #[arg(long, requires = "partitions")]
        of: Option<i32>,
    },
    /// The Ed-Fi translator: Ed-Fi DMS change messages in, contract v1.1 events out. Live, it
    /// reads edfi.topic and produces into the input topics; with --events and --out it
    /// translates a JSON-Lines export instead ({"key": "<documentUuid>", "value": <message or
    /// null>} a line), for back-testing with `ontrack replay`.
    Edfi {
        /// Config file (TOML): [edfi] (topic, data_dir, admin_addr, descriptor mappings),
        /// [kafka], [topics]; ONTRACK__SECTION__KEY variables override it.
        #[arg(long, value_name = "FILE.toml")]
        config: Option<PathBuf>,
        /// Kafka bootstrap servers (kafka.brokers) [default: 127.0.0.1:9092].
        #[arg(long, value_name = "HOST:PORT")]
        brokers: Option<String>,
        /// Offline: the DMS messages to translate; `-` reads standard input.
        #[arg(long, value_name = "DMS.jsonl", requires = "out")]
        events: Option<PathBuf>,
        /// Offline: where the contract events go, one a line; `-` writes standard output.
        #[arg(long, value_name = "EVENTS.jsonl", requires = "events")]
        out: Option<PathBuf>,
        /// Offline: where rejected lines go, with their line number and reason
        /// [default: EVENTS.jsonl.rejected].
        #[arg(long, value_name = "FILE", requires = "events")]
        dead_letter: Option<PathBuf>,
        /// Log lines as JSON objects (for log shippers) or human-readable text.
        #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
        log_format: LogFormat,
    },
    /// Write a seeded synthetic district as JSON Lines (made-up students, for trying things out).
    Synth {
        #[command(flatten)]
        district: DistrictArgs,
        /// The first school day, YYYY-MM-DD.
        #[arg(long, default_value = "2026-08-24", value_parser = parse_date_arg)]
        start: time::Date,
        /// Share of extra malformed messages, 0 to 1.
        #[arg(long, default_value_t = 0.0)]
        bad_rate: f64,
        /// Where the events go; `-` writes standard output.
        #[arg(long, value_name = "FILE.jsonl", default_value = "-")]
        out: PathBuf,
    },
}

/// The synthetic district of `demo` and `synth`.
#[derive(Debug, Clone, Copy, clap::Args)]
struct DistrictArgs {
    #[arg(long, default_value_t = 2_000)]
    students: u32,
    #[arg(long, default_value_t = 2)]
    schools: u32,
    /// School days (weekdays).
    #[arg(long, default_value_t = 60)]
    days: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How schools send attendance: positive (a record per student and day), absence-only
    /// (absences and tardies, with calendars and enrollments), or mixed (odd-numbered schools
    /// absence-only) [default: mixed for demo, positive otherwise].
    #[arg(long, value_enum)]
    feed: Option<Feed>,
}

impl DistrictArgs {
    fn spec(&self) -> DistrictSpec {
        let DistrictArgs { students, schools, days, seed, feed } = *self;
        let feed = feed.unwrap_or(Feed::Positive);
        DistrictSpec { students, schools, days, seed, feed, ..DistrictSpec::default() }
    }
}

fn parse_date_arg(s: &str) -> Result<time::Date, String> {
    ontrack::core::decode::parse_date(s).ok_or_else(|| format!("expected YYYY-MM-DD, got {s:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ontrack: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo { district } => {
            // Both kinds of district by default: one school of each.
            let feed = district.feed.unwrap_or(Feed::Mixed);
            ontrack::demo::run(DistrictSpec { feed, ..district.spec() }, &mut io::stdout().lock())
        }
        Command::Run { config, brokers, data_dir, admin_addr, log_format } => {
            init_logs(log_format);
            // Precedence: flags, then environment, then the file, then defaults.
            let mut env: Vec<(String, String)> = std::env::vars().collect();
            if let Some(b) = brokers {
                env.push(("ONTRACK__KAFKA__BROKERS".into(), b));
            }
            if let Some(d) = data_dir {
                env.push(("ONTRACK__DATA_DIR".into(), d.display().to_string()));
            }
            if let Some(a) = admin_addr {
                env.push(("ONTRACK__ADMIN__ADDR".into(), a));
            }
            let config = ontrack::config::Config::load(config.as_deref(), env)?;
            let rules = load_rules(config.rules_file.as_ref())?;
            let shutdown = ontrack::shutdown::Shutdown::new();
            shutdown.on_signals().context("cannot install the signal handlers")?;
            ontrack::service::run(&config, rules, &shutdown)
        }
        Command::Edfi { config, brokers, events, out, dead_letter, log_format } => {
            let mut env: Vec<(String, String)> = std::env::vars().collect();
            if let Some(b) = brokers {
                env.push(("ONTRACK__KAFKA__BROKERS".into(), b));
            }
            let config = ontrack::config::Config::load(config.as_deref(), env)?;
            let (Some(events), Some(out)) = (events, out) else {
                init_logs(log_format);
                let shutdown = ontrack::shutdown::Shutdown::new();
                shutdown.on_signals().context("cannot install the signal handlers")?;
                return ontrack::translator::run(&config, &shutdown);
            };
            let mapping = ontrack::edfi::Mapping::new(&config.edfi)
                .map_err(|(key, why)| anyhow::anyhow!("config: {key}: {why}"))?;
            let dead_letter = dead_letter.unwrap_or_else(|| rejected_path(&out, "edfi"));
            let input = open_in(&events, "--events")?;
            let output = open_out(&out, "--out")?;
            let rejected = File::create(&dead_letter).with_context(|| {
                format!("--dead-letter {}: cannot create", dead_letter.display())
            })?;
            let summary = ontrack::translator::translate_file(
                input,
                output,
                BufWriter::new(rejected),
                &ontrack::edfi::Translator::new(mapping),
            )
            .context("translation failed")?;
            eprint!("{summary}");
            if summary.outcomes.iter().any(|((_, o), _)| *o == "dead_letter") {
                eprintln!("rejected messages: {}", dead_letter.display());
            }
            Ok(())
        }
        Command::Replay { events, out, rules, dead_letter, as_of } => {
            let rules = load_rules(rules.as_ref())?;
            let dead_letter = dead_letter.unwrap_or_else(|| rejected_path(&out, "replay"));
            let input = open_in(&events, "--events")?;
            let output = open_out(&out, "--out")?;
            let rejected = File::create(&dead_letter).with_context(|| {
                format!("--dead-letter {}: cannot create", dead_letter.display())
            })?;
            let summary = replay_as_of(
                input,
                output,
                BufWriter::new(rejected),
                &rules,
                as_of,
                OffsetDateTime::now_utc,
                |line, err| eprintln!("line {line}: {err}"),
            )
            .context("replay failed")?;
            eprint!("{summary}");
            if summary.rejected > 0 {
                eprintln!("rejected lines: {}", dead_letter.display());
            }
            Ok(())
        }
        Command::Loadgen {
            district,
            brokers,
            rate,
            seconds,
            from_day,
            topic_prefix,
            partitions,
            of,
        } => {
            let mut topics = ontrack::pipeline::Topics::default();
            if !topic_prefix.is_empty() {
                for t in [
                    &mut topics.attendance,
                    &mut topics.discipline,
                    &mut topics.grades,
                    &mut topics.assignments,
                    &mut topics.enrollment,
                    &mut topics.calendar,
                ] {
                    *t = format!("{topic_prefix}.{t}");
                }
            }
            let load = ontrack::loadgen::Load {
                district: district.spec(),
                brokers,
                topics,
                rate,
                duration: seconds.map(std::time::Duration::from_secs_f64),
                from_day,
                split: of.map(|of| ontrack::loadgen::Split { partitions, of }),
            };
            let produced = ontrack::loadgen::run(&load)?;
            println!(
                "produced={} seconds={:.3} events_per_s={:.0}",
                produced.events,
                produced.took.as_secs_f64(),
                produced.per_second()
            );
            Ok(())
        }
        Command::Synth { district, start, bad_rate, out } => {
            if !(0.0..=1.0).contains(&bad_rate) {
                anyhow::bail!("--bad-rate: must be from 0 to 1, got {bad_rate}");
            }
            let spec = DistrictSpec { start, bad_rate, ..district.spec() };
            let days = spec.days;
            let mut district = District::new(spec);
            let mut output = open_out(&out, "--out")?;
            for day in 0..days {
                for e in district.day(day) {
                    output.write_all(e.json.as_bytes())?;
                    output.write_all(b"\n")?;
                }
            }
            output.flush()?;
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr);
    match format {
        // One object per line, with the current span (a batch's partitions and offsets).
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
        LogFormat::Pretty => logs.with_ansi(io::IsTerminal::is_terminal(&io::stderr())).init(),
    }
}

/// Where rejected lines go by default: next to the output (`replay.rejected` for stdout).
fn rejected_path(out: &std::path::Path, mode: &str) -> PathBuf {
    if out.as_os_str() == "-" {
        PathBuf::from(format!("{mode}.rejected"))
    } else {
        let mut p = out.as_os_str().to_owned();
        p.push(".rejected");
        PathBuf::from(p)
    }
}

fn open_in(path: &PathBuf, flag: &str) -> anyhow::Result<Box<dyn io::BufRead>> {
    Ok(if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        let f =
            File::open(path).with_context(|| format!("{flag} {}: cannot open", path.display()))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    })
}

fn open_out(path: &PathBuf, flag: &str) -> anyhow::Result<Box<dyn Write>> {
    Ok(if path.as_os_str() == "-" {
        Box::new(BufWriter::new(io::stdout().lock()))
    } else {
        let f = File::create(path)
            .with_context(|| format!("{flag} {}: cannot create", path.display()))?;
        Box::new(BufWriter::with_capacity(1 << 20, f))
    })
}

fn load_rules(path: Option<&PathBuf>) -> anyhow::Result<Rules> {
    let Some(path) = path else {
        return Ok(Rules::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--rules {}: cannot read", path.display()))?;
    Rules::from_toml(&text).with_context(|| format!("rules file {}", path.display()))
}
