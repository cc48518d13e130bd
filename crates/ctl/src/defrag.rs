//! `keelctl defrag`: defragments the members of --endpoints one at a time, followers first and the
//! leader last (etcd's advice), waiting for each to answer `Status` again before the next. With
//! `--if-above P%`, only members where it pays off: whose database file is above P% of its quota, or
//! whose file is more than P% free space (the same rule as Keel's `--auto-defrag-threshold`), and never
//! files under 1 MiB.

use crate::connect;
use anyhow::Context;
use keel_api::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_api::etcdserverpb::{DefragmentRequest, StatusRequest, StatusResponse};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// etcd's default quota, for servers whose Status does not say theirs.
const DEFAULT_QUOTA: u64 = 2 * 1024 * 1024 * 1024;
/// With `--if-above`, files smaller than this are never worth it (as for Keel's auto-defrag).
const MIN_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only defragment members whose file is above this share of the quota, or this share free; e.g. 80%.
    #[arg(long, value_parser = parse_share)]
    if_above: Option<f64>,
    /// How long one member's defragmentation may take.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
}

fn parse_share(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(number) => (number, 100.0),
        None => (text, 1.0),
    };
    let share = number.trim().parse::<f64>().map_err(|_| format!("{text:?} is not a share like 80% or 0.8"))? / scale;
    if (0.0..=1.0).contains(&share) { Ok(share) } else { Err(format!("{text:?} is not between 0% and 100%")) }
}

struct Member {
    endpoint: String,
    client: MaintenanceClient<Channel>,
    status: StatusResponse,
}

pub async fn run(args: Args, endpoints: &[String]) -> anyhow::Result<bool> {
    let mut members = Vec::new();
    for endpoint in endpoints {
        let mut client = MaintenanceClient::new(connect::channel(endpoint).await?);
        let status =
            client.status(StatusRequest {}).await.with_context(|| format!("Status of {endpoint}"))?.into_inner();
        members.push(Member { endpoint: endpoint.clone(), client, status });
    }
    // Followers first, the leader last.
    members.sort_by_key(|member| {
        member.status.leader == member.status.header.as_ref().map_or(0, |header| header.member_id)
    });
    let total = members.len();
    let mut all_ok = true;
    for (position, member) in members.iter_mut().enumerate() {
        let size = member.status.db_size.max(0) as u64;
        let in_use = member.status.db_size_in_use.max(0) as u64;
        let quota = if member.status.db_size_quota > 0 { member.status.db_size_quota as u64 } else { DEFAULT_QUOTA };
        let free = 1.0 - in_use as f64 / size.max(1) as f64;
        let of_quota = size as f64 / quota as f64;
        let label = format!("[{}/{total}] {}", position + 1, member.endpoint);
        let summary = format!(
            "{} ({:.0}% of quota {}, {:.0}% free)",
            connect::bytes(size),
            of_quota * 100.0,
            connect::bytes(quota),
            free * 100.0
        );
        if let Some(threshold) = args.if_above {
            if size < MIN_FILE_BYTES {
                println!("{label}: {summary}: under {}, skipped", connect::bytes(MIN_FILE_BYTES));
                continue;
            }
            if of_quota <= threshold && free <= threshold {
                println!("{label}: {summary}: below {:.0}%, skipped", threshold * 100.0);
                continue;
            }
        }
        let spinner = connect::spinner(format!("{label}: {summary}: defragmenting"));
        let started = Instant::now();
        let defrag = tokio::time::timeout(
            Duration::from_secs(args.timeout_seconds),
            member.client.defragment(DefragmentRequest {}),
        )
        .await;
        spinner.finish_and_clear();
        match defrag {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                println!(
                    "{label}: defragmentation FAILED: {}; the next members are left alone, fix this one first",
                    status.message()
                );
                all_ok = false;
                break;
            }
            Err(_) => {
                println!(
                    "{label}: no answer within {} s; the next members are left alone (check the member's log)",
                    args.timeout_seconds
                );
                all_ok = false;
                break;
            }
        }
        let after = member
            .client
            .status(StatusRequest {})
            .await
            .with_context(|| format!("Status of {} after its defragmentation", member.endpoint))?
            .into_inner();
        println!(
            "{label}: defragmented in {:.1} s: {} -> {}",
            started.elapsed().as_secs_f64(),
            connect::bytes(size),
            connect::bytes(after.db_size.max(0) as u64)
        );
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::parse_share;

    #[test]
    fn shares_read_as_percentages_or_ratios() {
        assert_eq!(parse_share("80%"), Ok(0.8));
        assert_eq!(parse_share("0.5"), Ok(0.5));
        assert!(parse_share("180%").is_err());
        assert!(parse_share("lots").is_err());
    }
}
