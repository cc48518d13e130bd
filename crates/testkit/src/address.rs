//! Loopback addresses no other server of the test run uses.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// The client and peer ports every kit server listens on, each on its own loopback address (away from
/// etcd's 2379/2380, so a system etcd listening on every address does not collide).
pub const CLIENT_PORT: u16 = 32379;
pub const PEER_PORT: u16 = 32380;

/// A loopback address (127.x.y.z) for one server: x.y from this process's id, z from a counter, so two
/// test processes running at once, or two servers of one process, never share an address. Checked free
/// on [`CLIENT_PORT`] and [`PEER_PORT`] before it is handed out.
pub fn fresh_host() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let process = std::process::id();
    loop {
        let count = NEXT.fetch_add(1, Ordering::Relaxed);
        // 127.0.0.0/8: the second octet from the process id (never 0, kept for 127.0.0.1), the third and
        // fourth from the process id's low bits and the counter.
        let second = 1 + (process % 250);
        let third = (process / 250 + count / 250) % 256;
        let fourth = 2 + count % 250;
        let host = format!("127.{second}.{third}.{fourth}");
        let free = [CLIENT_PORT, PEER_PORT].iter().all(|port| {
            let address: SocketAddr = format!("{host}:{port}").parse().expect("an IPv4 address");
            std::net::TcpListener::bind(address).is_ok()
        });
        if free {
            return host;
        }
    }
}

/// What a keel member wrote in `<data-dir>/bound-addresses`: (role, requested URL, bound address).
pub fn bound_addresses(data_dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(data_dir.join("bound-addresses")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            Some((parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_loopback_and_never_repeat() {
        let hosts: Vec<String> = (0..600).map(|_| fresh_host()).collect();
        let mut unique = hosts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), hosts.len());
        for host in &hosts {
            let address: std::net::Ipv4Addr = host.parse().unwrap();
            assert!(address.is_loopback() && address != std::net::Ipv4Addr::LOCALHOST, "{host}");
        }
    }
}
