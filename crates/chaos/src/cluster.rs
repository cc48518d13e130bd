//! The members: real `keel` processes (each in its network namespace), their proxies, and the process
//! faults: kill -9 and restart, SIGSTOP and SIGCONT, and a data dir on a small tmpfs that can be filled.

use crate::net::{Network, PROXY_PORT_BASE};
use crate::proxy::{self, Links};
use anyhow::{Context, bail};
use keel_api::etcdserverpb::StatusRequest;
use keel_api::etcdserverpb::maintenance_client::MaintenanceClient;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Size of the tmpfs under a member's data dir for a run of `duration`: the WAL's three 64 MiB segments
/// (one waiting for the next log compaction to release it, the one being written, the next one
/// preallocated), 64 MiB of backend, and 5 MiB for each minute of the run, since the workload never
/// compacts and the backend keeps every revision (a 30 minute soak grew it by about 2.7 MiB a minute,
/// and a 192 MiB disk ran full at the end of one without any fault).
pub fn disk_bytes(duration: Duration) -> u64 {
    const MIB: u64 = 1024 * 1024;
    (3 * 64 + 64) * MIB + duration.as_secs().div_ceil(60) * 5 * MIB
}

pub struct Member {
    pub name: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub client_url: String,
    arguments: Vec<String>,
    child: Option<Child>,
    pub paused: bool,
    /// The tmpfs mounted on the data dir, when the run has one.
    tmpfs: bool,
    filler: PathBuf,
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub network: Network,
    pub links: Arc<Links>,
    keel: PathBuf,
    proxies: Vec<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    /// Starts `size` members under `dir` (the network must exist, and the calling runtime must run in
    /// the hub namespace when there is one). `extra` flags go to every member. Where the network has
    /// namespaces, each data dir is a tmpfs of `disk_bytes` (see [`disk_bytes`]).
    pub async fn start(
        network: Network,
        size: usize,
        dir: &Path,
        keel: &Path,
        extra: &[String],
        disk_bytes: u64,
    ) -> anyhow::Result<Cluster> {
        let links = Arc::new(Links::default());
        let mut proxies = Vec::new();
        let mut advertised = Vec::new();
        let mut listens = Vec::new();
        for index in 0..size {
            let (client, peer, proxy_port) = match &network {
                Network::Namespaces(_) => (2379, 2380, PROXY_PORT_BASE + index as u16),
                Network::Loopback { .. } => (keel_testkit::CLIENT_PORT, keel_testkit::PEER_PORT, 0),
            };
            let listener = tokio::net::TcpListener::bind(SocketAddr::new(network.hub_ip(), proxy_port))
                .await
                .context("binding a member's proxy")?;
            let proxy_address = listener.local_addr()?;
            let target = SocketAddr::new(network.member_ip(index), peer);
            proxies.push(tokio::spawn(proxy::serve(listener, index, target, links.clone(), network.identify())));
            advertised.push(format!("http://{proxy_address}"));
            listens.push((client, peer));
        }
        let initial: Vec<String> =
            advertised.iter().enumerate().map(|(index, url)| format!("m{index}={url}")).collect();
        let initial = initial.join(",");
        let use_tmpfs = network.namespaces().is_some();
        let mut members = Vec::new();
        for (index, (client, peer)) in listens.into_iter().enumerate() {
            let ip = network.member_ip(index);
            let data_dir = dir.join(format!("m{index}"));
            std::fs::create_dir_all(&data_dir)?;
            let tmpfs = use_tmpfs && mount_tmpfs(&data_dir, disk_bytes).is_ok();
            let client_url = format!("http://{ip}:{client}");
            let mut arguments = keel_testkit::MemberFlags {
                name: format!("m{index}"),
                data_dir: data_dir.join("data"),
                client_url: client_url.clone(),
                listen_peer_url: format!("http://{ip}:{peer}"),
                advertise_peer_url: advertised[index].clone(),
                initial_cluster: initial.clone(),
            }
            .arguments();
            arguments.extend(extra.iter().cloned());
            members.push(Member {
                name: format!("m{index}"),
                log: dir.join(format!("m{index}.log")),
                filler: data_dir.join("filler"),
                data_dir,
                client_url,
                arguments,
                child: None,
                paused: false,
                tmpfs,
            });
        }
        let mut cluster = Cluster { members, network, links, keel: keel.to_path_buf(), proxies };
        for index in 0..size {
            cluster.spawn(index)?;
        }
        Ok(cluster)
    }

    pub fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let member = &self.members[index];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&member.log)?;
        let mut command = self.network.command(index, &self.keel);
        if member.arguments.iter().any(|argument| argument == "--test-unsafe-local-reads") {
            command.env("KEEL_ALLOW_UNSAFE_TEST_FLAGS", "1");
        }
        let child = command
            .args(&member.arguments)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.keel.display()))?;
        let member = &mut self.members[index];
        member.child = Some(child);
        member.paused = false;
        Ok(())
    }

    /// `kill -9`.
    pub fn kill(&mut self, index: usize) {
        let member = &mut self.members[index];
        if let Some(mut child) = member.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        member.paused = false;
    }

    pub fn pause(&mut self, index: usize) {
        self.signal(index, libc::SIGSTOP);
        self.members[index].paused = true;
    }

    pub fn resume(&mut self, index: usize) {
        self.signal(index, libc::SIGCONT);
        self.members[index].paused = false;
    }

    fn signal(&self, index: usize, signal: i32) {
        if let Some(child) = &self.members[index].child {
            // SAFETY: kill(2) on the pid of a child we started and have not reaped.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// Whether the member's process is alive (a member that exited on its own is reaped here).
    pub fn is_running(&mut self, index: usize) -> bool {
        let member = &mut self.members[index];
        match &mut member.child {
            Some(child) => match child.try_wait() {
                Ok(None) => true,
                _ => {
                    member.child = None;
                    false
                }
            },
            None => false,
        }
    }

    /// Fills the member's disk (its tmpfs) to the last byte.
    pub fn fill_disk(&self, index: usize) -> anyhow::Result<()> {
        let member = &self.members[index];
        if !member.tmpfs {
            bail!("member {} has no tmpfs data dir", member.name);
        }
        let mut file = std::fs::File::create(&member.filler)?;
        let block = vec![0u8; 1024 * 1024];
        loop {
            match std::io::Write::write(&mut file, &block) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        // The last partial block.
        while std::io::Write::write(&mut file, &block[..4096]).is_ok_and(|written| written > 0) {}
        Ok(())
    }

    pub fn free_disk(&self, index: usize) {
        let _ = std::fs::remove_file(&self.members[index].filler);
    }

    pub fn supports_full_disk(&self) -> bool {
        self.members.iter().all(|member| member.tmpfs)
    }

    /// Which member leads, as the members that answer say (None when no answering member leads).
    pub async fn leader(&self) -> Option<usize> {
        let mut answers = Vec::new();
        for (index, member) in self.members.iter().enumerate() {
            if member.paused || member.child.is_none() {
                continue;
            }
            if let Some((id, leader)) = status(&member.client_url).await {
                answers.push((index, id, leader));
            }
        }
        let leader = answers.iter().map(|(_, _, leader)| *leader).find(|leader| *leader != 0)?;
        answers.iter().find(|(_, id, _)| *id == leader).map(|(index, _, _)| *index)
    }

    /// Stops everything and unmounts the data dirs.
    pub fn shutdown(&mut self) {
        for index in 0..self.members.len() {
            if self.members[index].paused {
                self.resume(index);
            }
            self.kill(index);
        }
        for proxy in &self.proxies {
            proxy.abort();
        }
        for member in &self.members {
            if member.tmpfs {
                let _ = std::process::Command::new("umount").arg("-l").arg(&member.data_dir).output();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// (member id, leader id) from the member's Status, within a second.
pub async fn status(url: &str) -> Option<(u64, u64)> {
    let attempt = async {
        let channel = crate::workload::connect(url).await?;
        let status = MaintenanceClient::new(channel).status(StatusRequest {}).await.ok()?.into_inner();
        Some((status.header?.member_id, status.leader))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt).await.ok().flatten()
}

fn mount_tmpfs(dir: &Path, bytes: u64) -> anyhow::Result<()> {
    let output = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
        .arg(dir)
        .output()?;
    if !output.status.success() {
        bail!("mount tmpfs: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}
