//! The endpoints and the shared connections.

use anyhow::Context;
use keel_api::etcdserverpb::kv_client::KvClient;
use keel_api::etcdserverpb::lease_client::LeaseClient;
use keel_api::etcdserverpb::watch_client::WatchClient;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

pub struct Connections {
    channels: Vec<Channel>,
}

impl Connections {
    /// Opens `count` connections, spread round-robin over `endpoints`.
    pub async fn open(endpoints: &[String], count: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(!endpoints.is_empty(), "--endpoints is empty");
        let mut channels = Vec::new();
        for index in 0..count.max(1) {
            let address = &endpoints[index % endpoints.len()];
            let url = if address.contains("://") { address.clone() } else { format!("http://{address}") };
            let channel = Endpoint::from_shared(url.clone())
                .with_context(|| format!("bad endpoint {address}"))?
                .connect_timeout(Duration::from_secs(3))
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("cannot connect to {url}; is the server running?"))?;
            channels.push(channel);
        }
        Ok(Connections { channels })
    }

    /// The connection client `client` uses.
    pub fn channel(&self, client: usize) -> Channel {
        self.channels[client % self.channels.len()].clone()
    }

    pub fn kv(&self, client: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(client)).max_decoding_message_size(usize::MAX)
    }

    pub fn watch(&self, client: usize) -> WatchClient<Channel> {
        WatchClient::new(self.channel(client)).max_decoding_message_size(usize::MAX)
    }

    pub fn lease(&self, client: usize) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel(client))
    }
}
