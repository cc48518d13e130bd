//! The fault schedule: chosen from the seed, one fault at a time, each held for a few seconds and then
//! healed, with quiet gaps between them.

use crate::cluster::Cluster;
use crate::proxy::LinkFault;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// kill -9 of the leader, restarted after the hold.
    KillLeader,
    /// kill -9 of a follower.
    KillFollower,
    /// SIGSTOP of the leader, SIGCONT after the hold.
    PauseLeader,
    PauseFollower,
    /// The leader cut off from every other member, both ways.
    IsolateLeader,
    /// A random minority cut off from the majority.
    SplitMinority,
    /// Two members that cannot reach each other, both reaching a third (a "bridge").
    Bridge,
    /// 5 ms each way on every link: the 10 ms round trip operators are warned about.
    Latency10ms,
    /// 100 ms each way on one member's links: a 200 ms round trip.
    Latency200ms,
    /// "Loss" on every link: 5% of the data held back by a 200 ms retransmission.
    Loss,
    /// A member's data dir filled to the last byte.
    FullDisk,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::KillLeader,
        Kind::KillFollower,
        Kind::PauseLeader,
        Kind::PauseFollower,
        Kind::IsolateLeader,
        Kind::SplitMinority,
        Kind::Bridge,
        Kind::Latency10ms,
        Kind::Latency200ms,
        Kind::Loss,
        Kind::FullDisk,
    ];

    fn needs_partitions(self) -> bool {
        matches!(self, Kind::IsolateLeader | Kind::SplitMinority | Kind::Bridge)
    }
}

/// One injected fault, for the report.
#[derive(Debug, Clone)]
pub struct Injected {
    pub at: Duration,
    pub kind: Kind,
    pub detail: String,
}

pub struct Schedule {
    rng: StdRng,
    kinds: Vec<Kind>,
}

impl Schedule {
    /// The faults this cluster can take, chosen from `wanted`.
    pub fn new(seed: u64, wanted: &[Kind], cluster: &Cluster) -> Schedule {
        let kinds = wanted
            .iter()
            .copied()
            .filter(|kind| !kind.needs_partitions() || cluster.network.supports_partitions())
            .filter(|kind| *kind != Kind::FullDisk || cluster.supports_full_disk())
            .collect();
        Schedule { rng: StdRng::seed_from_u64(seed ^ 0x5eed_fa17), kinds }
    }

    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    pub fn quiet_gap(&mut self) -> Duration {
        Duration::from_millis(self.rng.random_range(500..2500))
    }

    /// Injects the next fault, holds it, heals it. Returns what was done.
    pub async fn next(&mut self, cluster: &mut Cluster, started: std::time::Instant) -> Option<Injected> {
        let kind = *self.kinds.choose(&mut self.rng)?;
        let size = cluster.members.len();
        let hold = Duration::from_millis(self.rng.random_range(1500..5000));
        let leader = cluster.leader().await;
        let random_member = self.rng.random_range(0..size);
        let follower = (0..size)
            .filter(|index| Some(*index) != leader)
            .collect::<Vec<_>>()
            .choose(&mut self.rng)
            .copied()
            .unwrap_or(random_member);
        let at = started.elapsed();
        let detail = match kind {
            Kind::KillLeader | Kind::KillFollower => {
                let target = if kind == Kind::KillLeader { leader.unwrap_or(random_member) } else { follower };
                cluster.kill(target);
                tokio::time::sleep(hold).await;
                let _ = cluster.spawn(target);
                format!("m{target} killed for {hold:?}")
            }
            Kind::PauseLeader | Kind::PauseFollower => {
                let target = if kind == Kind::PauseLeader { leader.unwrap_or(random_member) } else { follower };
                cluster.pause(target);
                tokio::time::sleep(hold).await;
                cluster.resume(target);
                format!("m{target} paused for {hold:?}")
            }
            Kind::IsolateLeader => {
                let target = leader.unwrap_or(random_member);
                let cut: Vec<(usize, usize)> = (0..size)
                    .filter(|other| *other != target)
                    .flat_map(|other| [(target, other), (other, target)])
                    .collect();
                partition_for(cluster, &cut, hold).await;
                format!("m{target} isolated for {hold:?}")
            }
            Kind::SplitMinority => {
                let mut order: Vec<usize> = (0..size).collect();
                rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut self.rng);
                let minority: Vec<usize> = order[..(size - 1) / 2].to_vec();
                let cut: Vec<(usize, usize)> = minority
                    .iter()
                    .flat_map(|inside| {
                        order[(size - 1) / 2..]
                            .iter()
                            .flat_map(move |outside| [(*inside, *outside), (*outside, *inside)])
                    })
                    .collect();
                partition_for(cluster, &cut, hold).await;
                format!("minority {minority:?} cut off for {hold:?}")
            }
            Kind::Bridge => {
                let mut order: Vec<usize> = (0..size).collect();
                rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut self.rng);
                let (a, b) = (order[0], order[1]);
                partition_for(cluster, &[(a, b), (b, a)], hold).await;
                format!("m{a} and m{b} cut from each other (the others bridge them) for {hold:?}")
            }
            Kind::Latency10ms | Kind::Loss => {
                let fault = if kind == Kind::Loss {
                    LinkFault { loss: 0.05, stall: Duration::from_millis(200), ..LinkFault::default() }
                } else {
                    LinkFault { delay: Duration::from_millis(5), ..LinkFault::default() }
                };
                for from in 0..size {
                    for to in (0..size).filter(|to| *to != from) {
                        cluster.links.set(from, to, fault);
                    }
                }
                tokio::time::sleep(hold).await;
                cluster.links.clear();
                format!("{fault:?} on every link for {hold:?}")
            }
            Kind::Latency200ms => {
                let fault = LinkFault { delay: Duration::from_millis(100), ..LinkFault::default() };
                for other in (0..size).filter(|other| *other != random_member) {
                    cluster.links.set(random_member, other, fault);
                    cluster.links.set(other, random_member, fault);
                }
                tokio::time::sleep(hold).await;
                cluster.links.clear();
                format!("200 ms round trips to m{random_member} for {hold:?}")
            }
            Kind::FullDisk => {
                let target = random_member;
                let filled = cluster.fill_disk(target);
                tokio::time::sleep(hold).await;
                cluster.free_disk(target);
                match filled {
                    Ok(()) => format!("m{target}'s disk full for {hold:?}"),
                    Err(error) => format!("m{target}'s disk could not be filled: {error}"),
                }
            }
        };
        Some(Injected { at, kind, detail })
    }
}

async fn partition_for(cluster: &Cluster, cut: &[(usize, usize)], hold: Duration) {
    if let Err(error) = cluster.network.partition(cut) {
        tracing_free_warn(&format!("partition failed: {error:#}"));
    }
    tokio::time::sleep(hold).await;
    if let Err(error) = cluster.network.partition(&[]) {
        tracing_free_warn(&format!("healing the partition failed: {error:#}"));
    }
}

fn tracing_free_warn(message: &str) {
    eprintln!("keel-chaos: {message}");
}
