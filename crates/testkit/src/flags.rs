//! The flags one member of a cluster starts with: the same for keel and etcd, as both take etcd's.

use std::path::PathBuf;

/// One member's identity and addresses.
#[derive(Debug, Clone)]
pub struct MemberFlags {
    pub name: String,
    pub data_dir: PathBuf,
    /// What it listens on for clients, and advertises (the same URL).
    pub client_url: String,
    /// What it listens on for peers.
    pub listen_peer_url: String,
    /// What the other members dial (the listen URL, or a proxy in front of it).
    pub advertise_peer_url: String,
    /// `name=peer-url,...` of every member.
    pub initial_cluster: String,
}

impl MemberFlags {
    /// A member listening on `host` with the kit's ports, advertising what it listens on.
    pub fn on_host(name: &str, data_dir: PathBuf, host: &str, initial_cluster: &str) -> Self {
        let peer = format!("http://{host}:{}", super::PEER_PORT);
        MemberFlags {
            name: name.to_string(),
            data_dir,
            client_url: format!("http://{host}:{}", super::CLIENT_PORT),
            listen_peer_url: peer.clone(),
            advertise_peer_url: peer,
            initial_cluster: initial_cluster.to_string(),
        }
    }

    pub fn arguments(&self) -> Vec<String> {
        [
            ("--name", self.name.clone()),
            ("--data-dir", self.data_dir.display().to_string()),
            ("--listen-client-urls", self.client_url.clone()),
            ("--advertise-client-urls", self.client_url.clone()),
            ("--listen-peer-urls", self.listen_peer_url.clone()),
            ("--initial-advertise-peer-urls", self.advertise_peer_url.clone()),
            ("--initial-cluster", self.initial_cluster.clone()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }
}
