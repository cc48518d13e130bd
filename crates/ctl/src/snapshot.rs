//! `keelctl snapshot`: save a member's snapshot (`Maintenance.Snapshot`, checked before it is kept),
//! show what a snapshot holds, and restore a new cluster from one.
//!
//! Restoring a cluster, the rules: restore every member of the new cluster from the same snapshot file,
//! each into a new, empty data dir, with the same `--initial-cluster` and `--initial-cluster-token` and
//! its own `--name` and `--initial-advertise-peer-urls`; then start every member with those same flags.
//! The new cluster gets an id of its own (derived from its members and the snapshot's checksum), so it
//! never mixes with the cluster the snapshot came from, and its Raft history starts over; every key
//! keeps its revisions.

use crate::connect;
use anyhow::Context;
use keel_api::etcdserverpb::SnapshotRequest;
use keel_api::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_api::identity;
use keel_state::backend::snapshot::{self, RestoredIdentity};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Saves a snapshot of one member (the first of --endpoints) to a file.
    Save { path: PathBuf },
    /// Checks a snapshot file and shows its hash, revision, keys and size.
    Status {
        path: PathBuf,
        /// Output format: table, simple or json.
        #[arg(short = 'w', long = "write-out", default_value = "table")]
        write_out: String,
    },
    /// Restores a snapshot into a new data dir: one member of a new cluster.
    Restore(RestoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    path: PathBuf,
    /// This member's name in --initial-cluster.
    #[arg(long, default_value = "default")]
    name: String,
    /// The new data dir (must not exist, or be empty) [default: <name>.keel].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The new cluster: name=peerURL,... [default: <name>=<initial-advertise-peer-urls>].
    #[arg(long)]
    initial_cluster: Option<String>,
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// This member's peer URLs (comma-separated).
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// Restore even if the snapshot's checksum is missing or wrong (a damaged file).
    #[arg(long)]
    skip_hash_check: bool,
}

pub async fn run(command: Command, endpoints: &[String]) -> anyhow::Result<bool> {
    match command {
        Command::Save { path } => save(endpoints, &path).await,
        Command::Status { path, write_out } => tokio::task::spawn_blocking(move || status(&path, &write_out)).await?,
        Command::Restore(args) => tokio::task::spawn_blocking(move || restore(&args)).await?,
    }
}

async fn save(endpoints: &[String], path: &Path) -> anyhow::Result<bool> {
    let [endpoint] = endpoints else {
        anyhow::bail!("snapshot save takes one endpoint (--endpoints), the member to back up; got {endpoints:?}");
    };
    let part = path.with_extension("part");
    let mut client = MaintenanceClient::new(connect::channel(endpoint).await?).max_decoding_message_size(usize::MAX);
    let mut stream = client.snapshot(SnapshotRequest {}).await.context("asking for a snapshot")?.into_inner();
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&part).with_context(|| format!("cannot create {}", part.display()))?,
    );
    let mut bar = None;
    let mut received = 0u64;
    while let Some(piece) =
        stream.message().await.context("receiving the snapshot (the member may have stopped; try again)")?
    {
        let bar = bar.get_or_insert_with(|| {
            connect::byte_bar(piece.remaining_bytes + piece.blob.len() as u64, "fetching snapshot")
        });
        file.write_all(&piece.blob).with_context(|| format!("writing {}", part.display()))?;
        received += piece.blob.len() as u64;
        bar.set_position(received);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let file = file.into_inner().map_err(|error| error.into_error())?;
    file.sync_all()?;
    drop(file);
    let checked = snapshot::verify(&part, |_| {});
    let sha256 = match checked {
        Ok(sha256) => sha256,
        Err(error) => {
            let _ = std::fs::remove_file(&part);
            anyhow::bail!("the received snapshot is damaged ({error}); nothing was saved, try again");
        }
    };
    std::fs::rename(&part, path).with_context(|| format!("renaming {} to {}", part.display(), path.display()))?;
    println!(
        "Snapshot saved at {} ({}, {received} bytes, sha256 {})",
        path.display(),
        connect::bytes(received),
        hex(&sha256)
    );
    Ok(true)
}

fn status(path: &Path, write_out: &str) -> anyhow::Result<bool> {
    let scratch = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let status = snapshot::status(path, scratch).with_context(|| format!("reading the snapshot {}", path.display()))?;
    match write_out {
        "json" => println!(
            "{}",
            serde_json::json!({
                "hash": status.hash,
                "revision": status.revision,
                "compactRevision": status.compact_revision,
                "totalKey": status.total_keys,
                "totalSize": status.total_size,
                "sha256": hex(&status.sha256),
            })
        ),
        "simple" => println!(
            "{:x}, {}, {}, {}",
            status.hash,
            status.revision,
            status.total_keys,
            connect::bytes(status.total_size)
        ),
        _ => {
            let cells = [
                format!("{:x}", status.hash),
                status.revision.to_string(),
                status.total_keys.to_string(),
                connect::bytes(status.total_size),
            ];
            print_table(&["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], &cells);
        }
    }
    Ok(true)
}

fn print_table(headers: &[&str], cells: &[String]) {
    let widths: Vec<usize> = headers.iter().zip(cells).map(|(header, cell)| header.len().max(cell.len()) + 2).collect();
    let rule: String = widths.iter().map(|width| format!("+{}", "-".repeat(*width))).collect::<String>() + "+";
    let row = |items: Vec<&str>| -> String {
        items.iter().zip(&widths).map(|(item, width)| format!("|{item:^width$}")).collect::<String>() + "|"
    };
    println!("{rule}\n{}\n{rule}\n{}\n{rule}", row(headers.to_vec()), row(cells.iter().map(String::as_str).collect()));
}

fn restore(args: &RestoreArgs) -> anyhow::Result<bool> {
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.keel", args.name)));
    if std::fs::read_dir(&data_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        anyhow::bail!(
            "the data dir {} exists and is not empty: restore into a new, empty data dir",
            data_dir.display()
        );
    }
    let own_urls = url_list(&args.initial_advertise_peer_urls);
    let initial_cluster =
        args.initial_cluster.clone().unwrap_or_else(|| format!("{}={}", args.name, own_urls.join(",")));
    let members = parse_initial_cluster(&initial_cluster)?;
    let Some((_, listed)) = members.iter().find(|(name, _)| *name == args.name) else {
        anyhow::bail!("--initial-cluster has no member named {:?} (--name)", args.name);
    };
    let (mut listed, mut own) = (listed.clone(), own_urls.clone());
    listed.sort();
    own.sort();
    anyhow::ensure!(
        listed == own,
        "--initial-cluster gives {:?} peer URLs {listed:?}, but --initial-advertise-peer-urls is {own:?}",
        args.name
    );
    let ids: Vec<u64> =
        members.iter().map(|(_, urls)| identity::member_id(urls, &args.initial_cluster_token)).collect();
    let member_id = identity::member_id(&own_urls, &args.initial_cluster_token);

    let sha256 = if args.skip_hash_check {
        [0u8; 32]
    } else {
        let size = std::fs::metadata(&args.path).with_context(|| format!("cannot read {}", args.path.display()))?.len();
        let bar = connect::byte_bar(size, "checking snapshot");
        let sha256 = snapshot::verify(&args.path, |done| bar.set_position(done))?;
        bar.finish_and_clear();
        sha256
    };
    let cluster_id = identity::restored_cluster_id(&ids, &sha256);
    let db = data_dir.join("member/snap/db");
    let size = std::fs::metadata(&args.path)?.len();
    let bar = connect::byte_bar(size, "restoring");
    let info = snapshot::restore(&args.path, &db, RestoredIdentity { cluster_id, member_id }, false, |done| {
        bar.set_position(done)
    })
    .with_context(|| format!("restoring {} into {}", args.path.display(), data_dir.display()))?;
    bar.finish_and_clear();
    println!(
        "Restored {} (revision {}) into {} as member {member_id:x} of the new cluster {cluster_id:x}.",
        args.path.display(),
        info.revision,
        data_dir.display()
    );
    println!(
        "Start it with: keel --name {} --data-dir {} --initial-cluster {initial_cluster} --initial-cluster-token {} \
         --initial-advertise-peer-urls {} (and its usual client and listen flags).",
        args.name,
        data_dir.display(),
        args.initial_cluster_token,
        own_urls.join(",")
    );
    println!(
        "Restore every other member from this same file with the same --initial-cluster and --initial-cluster-token."
    );
    Ok(true)
}

/// URLs as etcd writes them in ids: trimmed, without a trailing slash.
fn url_list(text: &str) -> Vec<String> {
    text.split(',').map(|url| url.trim().trim_end_matches('/').to_string()).filter(|url| !url.is_empty()).collect()
}

/// `name=url,name=url,...` (a name may appear more than once, for several URLs).
fn parse_initial_cluster(text: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let (name, url) =
            part.split_once('=').with_context(|| format!("--initial-cluster: {part:?} is not name=peerURL"))?;
        let urls = url_list(url);
        match members.iter_mut().find(|(existing, _)| existing == name) {
            Some((_, existing)) => existing.extend(urls),
            None => members.push((name.to_string(), urls)),
        }
    }
    anyhow::ensure!(!members.is_empty(), "--initial-cluster names no members");
    Ok(members)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
