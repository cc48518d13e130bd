//! The fault-injection suite as CI runs it: a short schedule with every fault kind against a 3-member
//! cluster must pass (no linearizability violation, no lost acknowledged write, no watch gap, members
//! converge), and a deliberately broken build (linearizable reads served locally, without ReadIndex)
//! must be caught. The long soak is `keel-chaos --duration 30m`, by hand.

use keel_chaos::faults::Kind;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// One cluster at a time: the two tests share two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn config(
    name: &str,
    seed: u64,
    duration: Duration,
    faults: Vec<Kind>,
    member_flags: Vec<String>,
) -> keel_chaos::Config {
    let target = PathBuf::from(env!("CARGO_BIN_EXE_keel-chaos"));
    keel_chaos::Config {
        members: 3,
        duration,
        seed,
        keel: target.with_file_name("keel"),
        out: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{name}-{seed}")),
        clients: 6,
        keys: 4,
        watchers: 3,
        faults,
        member_flags,
        verbose: true,
    }
}

/// The seed: from KEEL_CHAOS_SEED to repeat a run, else a new one each time (printed either way).
fn seed() -> u64 {
    std::env::var("KEEL_CHAOS_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |now| now.as_nanos() as u64 % 1_000_000)
    })
}

#[test]
fn a_short_schedule_of_every_fault_kind_keeps_keel_linearizable() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let config = config("short", seed(), Duration::from_secs(100), Kind::ALL.to_vec(), Vec::new());
    let report = keel_chaos::run(&config).expect("the run completes");
    println!("{report}");
    assert!(report.faults.values().sum::<u32>() >= 10, "faults injected: {:?}", report.faults);
    assert!(report.faults.len() >= 5, "several fault kinds: {:?}", report.faults);
    assert!(report.operations > 1000, "{} operations", report.operations);
    assert!(report.passed(), "{report}");
    // The operator warnings fire under the real faults: 200 ms round trips, and elections.
    let logs: String = (0..config.members)
        .map(|index| std::fs::read_to_string(config.out.join(format!("m{index}.log"))).unwrap_or_default())
        .collect();
    if report.faults.contains_key(&Kind::Latency200ms) {
        assert!(
            logs.contains("slow network: the round trip to a peer is over 10 ms"),
            "no round-trip warning in the member logs"
        );
    }
    if report.leader_changes > 0 {
        assert!(
            logs.contains("leader election: this member won and leads now"),
            "no election warning in the member logs"
        );
    }
    keel_chaos::remove_data(&config.out);
}

#[test]
fn a_build_that_serves_linearizable_reads_locally_is_caught() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let faults = vec![Kind::IsolateLeader, Kind::SplitMinority, Kind::PauseFollower, Kind::Latency200ms];
    let config = config("broken", seed(), Duration::from_secs(45), faults, vec!["--test-unsafe-local-reads".into()]);
    let report = keel_chaos::run(&config).expect("the run completes");
    println!("{report}");
    assert!(report.linearizability.is_illegal(), "the checker must catch stale local reads:\n{report}");
    keel_chaos::remove_data(&config.out);
}
