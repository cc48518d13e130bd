//! `keel-chaos`: runs the fault-injection suite against real `keel` members and prints the verdicts.
//!
//! ```sh
//! keel-chaos --duration 30m              # the soak (as root, for namespaces and partitions)
//! keel-chaos --duration 90s --seed 42    # repeat a run
//! ```

use clap::Parser;
use keel_chaos::faults::Kind;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "keel-chaos", version, about)]
struct Args {
    /// How long to inject faults, e.g. 90s, 30m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// The schedule's seed [default: from the clock]; a failing run prints it.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 3)]
    members: usize,
    #[arg(long, default_value_t = 6)]
    clients: usize,
    #[arg(long, default_value_t = 4)]
    keys: usize,
    #[arg(long, default_value_t = 3)]
    watchers: usize,
    /// The keel binary [default: next to this one].
    #[arg(long)]
    keel: Option<PathBuf>,
    /// Where the run's folder goes [default: target/chaos/seed-<seed>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the members' data dirs of a run that passed.
    #[arg(long)]
    keep: bool,
    /// A flag for every member (repeatable), e.g. --member-flag=--snapshot-count=1000.
    #[arg(long = "member-flag", allow_hyphen_values = true)]
    member_flags: Vec<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number.parse().map_err(|_| format!("{text:?}: a duration like 90s or 30m"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "h" => Ok(Duration::from_secs(number * 3600)),
        _ => Err(format!("{text:?}: a duration like 90s or 30m")),
    }
}

fn main() {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |now| now.as_nanos() as u64)
    });
    let keel =
        args.keel.unwrap_or_else(|| std::env::current_exe().expect("this executable's path").with_file_name("keel"));
    let out = args.out.unwrap_or_else(|| PathBuf::from(format!("target/chaos/seed-{seed}")));
    let config = keel_chaos::Config {
        members: args.members,
        duration: args.duration,
        seed,
        keel,
        out: out.clone(),
        clients: args.clients,
        keys: args.keys,
        watchers: args.watchers,
        faults: Kind::ALL.to_vec(),
        member_flags: args.member_flags,
        verbose: true,
    };
    match keel_chaos::run(&config) {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                if !args.keep {
                    keel_chaos::remove_data(&out);
                }
            } else {
                std::process::exit(1);
            }
        }
        Err(error) => {
            eprintln!(
                "keel-chaos: the run could not complete: {error:#}\nseed {seed}; member logs are in {}",
                out.display()
            );
            std::process::exit(2);
        }
    }
}
