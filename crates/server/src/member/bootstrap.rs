//! How a member comes up from its data dir, apart from serving (etcd's `bootstrap.go` beside
//! `server.go`): its identity (ids fixed at first start, derived as etcd derives them), its Raft
//! configuration, and the Raft log opened over the state machine, installing a snapshot image the log
//! recorded but the store never switched to.

use super::{ClusterMember, MemberInfo};
use crate::config::{Settings, url_text};
use crate::datadir::DataDir;
use anyhow::Context;
use keel_api::identity;
use keel_raft::raft::eraftpb::ConfState;
use keel_raft::wal::WalOptions;
use keel_raft::{Bootstrap, LogError, LogStore, Recovered};
use keel_state::StateMachine;
use keel_state::backend::meta;

/// What bootstrap hands to serving.
pub struct Bootstrapped {
    pub machine: StateMachine,
    pub member: MemberInfo,
    pub log: LogStore,
    pub recovered: Recovered,
    pub conf_state: ConfState,
}

/// Opens the backend and the log in `data_dir` and establishes who this member is.
pub fn bootstrap(settings: &Settings, data_dir: &DataDir, wal_options: WalOptions) -> anyhow::Result<Bootstrapped> {
    let mut machine = StateMachine::open(&data_dir.backend())
        .with_context(|| format!("opening the backend in {}", data_dir.member().display()))?;
    let member = identity_of(settings, &mut machine)?;
    let (log, recovered, conf_state) = open_log(data_dir, &mut machine, &member, wal_options)?;
    data_dir.remove_stale_images(machine.state().index, true);
    Ok(Bootstrapped { machine, member, log, recovered, conf_state })
}

/// The member's ids: fixed at bootstrap (etcd ignores `--initial-cluster` on restart), derived from the
/// initial cluster's peer URLs and token the way etcd derives them.
fn identity_of(settings: &Settings, machine: &mut StateMachine) -> anyhow::Result<MemberInfo> {
    let stored = (read_id(machine, meta::CLUSTER_ID)?, read_id(machine, meta::MEMBER_ID)?);
    let members: Vec<ClusterMember> = settings
        .initial_cluster
        .iter()
        .map(|(_, urls)| {
            let peer_urls: Vec<String> = urls.iter().map(url_text).collect();
            ClusterMember { id: identity::member_id(&peer_urls, &settings.initial_cluster_token), peer_urls }
        })
        .collect();
    let (cluster_id, member_id) = match stored {
        (Some(cluster_id), Some(member_id)) => {
            // A restored data dir (ids, but no Raft configuration yet) must start as the member it was
            // restored for; after its first start, the stored configuration is what counts, as in etcd.
            let first_start = machine.meta(meta::CONF_STATE)?.is_none();
            if first_start && !members.iter().any(|member| member.id == member_id) {
                anyhow::bail!(
                    "the data dir {} belongs to member {member_id:x} of cluster {cluster_id:x}, which is not in --initial-cluster (with --initial-cluster-token {:?}); start it with the flags it was created or restored with (`keelctl snapshot restore` prints them)",
                    settings.data_dir.display(),
                    settings.initial_cluster_token
                );
            }
            (cluster_id, member_id)
        }
        _ => {
            let ids: Vec<u64> = members.iter().map(|member| member.id).collect();
            let own = identity::member_id(
                &settings.advertise_peer_urls.iter().map(url_text).collect::<Vec<_>>(),
                &settings.initial_cluster_token,
            );
            let cluster_id = identity::cluster_id(&ids);
            machine.store_meta(meta::CLUSTER_ID, &cluster_id.to_be_bytes())?;
            machine.store_meta(meta::MEMBER_ID, &own.to_be_bytes())?;
            (cluster_id, own)
        }
    };
    Ok(MemberInfo {
        cluster_id,
        member_id,
        client_urls: settings.advertise_client_urls.iter().map(url_text).collect(),
        members,
    })
}

fn read_id(machine: &StateMachine, name: &str) -> anyhow::Result<Option<u64>> {
    match machine.meta(name)? {
        Some(bytes) => {
            let bytes: [u8; 8] =
                bytes.as_slice().try_into().with_context(|| format!("meta key {name} is malformed"))?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
        None => Ok(None),
    }
}

/// The Raft configuration: stored at bootstrap (every initial member votes), read back on restart.
fn conf_state_of(machine: &mut StateMachine, member: &MemberInfo) -> anyhow::Result<ConfState> {
    if let Some(bytes) = machine.meta(meta::CONF_STATE)? {
        return Ok(keel_raft::decode_conf_state(&bytes)?);
    }
    let voters = member.members.iter().map(|member| member.id).collect();
    let conf_state = ConfState { voters, ..Default::default() };
    machine.store_meta(meta::CONF_STATE, &keel_raft::encode_conf_state(&conf_state))?;
    Ok(conf_state)
}

/// Opens the Raft log over the state machine. If the log records a snapshot the store never switched to
/// (the member stopped between the two), the image received for it is installed first, as etcd does with
/// its `snap/<index>.snap.db`.
fn open_log(
    data_dir: &DataDir,
    machine: &mut StateMachine,
    member: &MemberInfo,
    options: WalOptions,
) -> anyhow::Result<(LogStore, Recovered, ConfState)> {
    let wal_dir = data_dir.wal();
    let mut installed = false;
    loop {
        let conf_state = conf_state_of(machine, member)?;
        let bootstrap = Bootstrap { conf_state: conf_state.clone(), applied_index: machine.state().index };
        match LogStore::open(&wal_dir, options, &bootstrap) {
            Ok((log, recovered)) => return Ok((log, recovered, conf_state)),
            Err(LogError::AppliedBeforeLog { applied, first }) if !installed => {
                let image = data_dir.snapshot_image(first - 1);
                if !image.exists() {
                    return Err(LogError::AppliedBeforeLog { applied, first }.into());
                }
                tracing::info!(applied, snapshot_index = first - 1, image = %image.display(), "installing the snapshot image the log already records");
                machine.install(&image).with_context(|| format!("installing {}", image.display()))?;
                installed = true;
            }
            Err(error) => {
                return Err(
                    anyhow::Error::new(error).context(format!("opening the write-ahead log in {}", wal_dir.display()))
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::DataDir;
    use keel_raft::raft::eraftpb::Snapshot;
    use keel_state::backend::image;

    #[test]
    fn a_snapshot_the_log_recorded_but_the_store_missed_is_installed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let member = MemberInfo {
            cluster_id: 7,
            member_id: 2,
            client_urls: Vec::new(),
            members: vec![
                ClusterMember { id: 1, peer_urls: Vec::new() },
                ClusterMember { id: 2, peer_urls: Vec::new() },
            ],
        };
        // The leader's store has applied 5 entries; its image waits in snap/ under index 5.
        let mut leader = StateMachine::open(&dir.path().join("leader.db")).unwrap();
        let entries: Vec<keel_state::Entry<'_>> =
            (1..=5).map(|index| keel_state::Entry { index, term: 2, data: &[] }).collect();
        leader.apply(&entries, true).unwrap();
        let data_dir = DataDir::new(dir.path().to_path_buf(), None);
        std::fs::create_dir_all(data_dir.snap()).unwrap();
        let mut bytes = Vec::new();
        image::export(leader.backend(), &[meta::MEMBER_ID], &mut bytes, |_| {}).unwrap();
        image::import(bytes.as_slice(), &data_dir.snapshot_image(5), &[], |_| {}).unwrap();

        // This member's log recorded the snapshot, then the member stopped before its store switched.
        let mut machine = StateMachine::open(&data_dir.backend()).unwrap();
        {
            let (log, _, _) = open_log(&data_dir, &mut machine, &member, WalOptions::default()).unwrap();
            let mut log = log;
            let mut snapshot = Snapshot::default();
            snapshot.mut_metadata().index = 5;
            snapshot.mut_metadata().term = 2;
            snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2];
            log.install_snapshot(&snapshot).unwrap();
        }
        assert_eq!(machine.state().index, 0);
        let (_, recovered, _) = open_log(&data_dir, &mut machine, &member, WalOptions::default()).unwrap();
        assert_eq!(recovered.snapshot_index, 5);
        assert_eq!((machine.state().index, machine.state().term), (5, 2));
        assert!(!data_dir.snapshot_image(5).exists(), "the image became the store");
    }
}
