//! Where the members live on the network.
//!
//! With namespaces (root and iproute2): every member in a network namespace of its own, joined by a veth
//! link to a bridge in a "hub" namespace. The harness itself (clients, watchers, the fault proxies)
//! moves into the hub, so nothing it does touches the host's network. Partitions are iptables rules in
//! the hub: the members reach each other only through the proxies, so dropping what member `a` sends to
//! member `b`'s proxy port cuts that direction of the link.
//!
//! Without them (not root, no `ip` or `iptables`, or KEEL_CHAOS_LOOPBACK set), every member listens on a
//! loopback address of its own (the test kit's `fresh_host`, fixed ports: no race for free ports) and the
//! proxies, on 127.0.0.1, still add latency and loss (to every connection into or out of the member a
//! fault names, since the sender of a loopback connection cannot be told), but partitions and full disks
//! are not available; the run says so.

use anyhow::{Context, bail};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;

/// The chain the partition rules live in (in the hub namespace).
const CHAIN: &str = "KEELCHAOS";
/// Each member's proxy port in the hub, by member index (namespaces only).
pub const PROXY_PORT_BASE: u16 = 30000;

pub enum Network {
    Namespaces(Namespaces),
    /// Each member on a loopback address of its own (the test kit's), with fixed ports: no port races.
    Loopback {
        reason: String,
        hosts: Vec<Ipv4Addr>,
    },
}

pub struct Namespaces {
    /// `10.a.b` of this run's /24.
    subnet: [u8; 3],
    hub: String,
    members: Vec<String>,
}

impl Network {
    /// Namespaces if this process may make them, else loopback (with the reason).
    pub fn create(size: usize, tag: u16) -> Network {
        let loopback = |reason: String| {
            let hosts = (0..size).map(|_| keel_testkit::fresh_host().parse().expect("an IPv4 address")).collect();
            Network::Loopback { reason, hosts }
        };
        if std::env::var_os("KEEL_CHAOS_LOOPBACK").is_some() {
            return loopback("KEEL_CHAOS_LOOPBACK is set".into());
        }
        match Namespaces::create(size, tag) {
            Ok(namespaces) => Network::Namespaces(namespaces),
            Err(error) => loopback(format!("{error:#}")),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Network::Namespaces(namespaces) => format!(
                "network namespaces {}..{} behind the hub {}, partitions by iptables, latency and loss by the proxy",
                namespaces.members.first().map_or("", String::as_str),
                namespaces.members.last().map_or("", String::as_str),
                namespaces.hub
            ),
            Network::Loopback { reason, .. } => {
                format!("loopback only (no network namespaces: {reason}); latency and loss by the proxy, NO partitions")
            }
        }
    }

    pub fn supports_partitions(&self) -> bool {
        matches!(self, Network::Namespaces(_))
    }

    /// The address member `index` listens on for clients and peers.
    pub fn member_ip(&self, index: usize) -> IpAddr {
        match self {
            Network::Namespaces(namespaces) => IpAddr::V4(namespaces.ip(index as u8 + 1)),
            Network::Loopback { hosts, .. } => IpAddr::V4(hosts[index]),
        }
    }

    /// The address the proxies listen on.
    pub fn hub_ip(&self) -> IpAddr {
        match self {
            Network::Namespaces(namespaces) => IpAddr::V4(namespaces.ip(254)),
            Network::Loopback { .. } => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// A command that runs `program` as member `index` (in its namespace).
    pub fn command(&self, index: usize, program: &std::path::Path) -> Command {
        match self {
            Network::Namespaces(namespaces) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &namespaces.members[index]]).arg(program);
                command
            }
            Network::Loopback { .. } => Command::new(program),
        }
    }

    /// Names the member an incoming proxy connection comes from, by its source address.
    pub fn identify(&self) -> Arc<dyn Fn(SocketAddr) -> Option<usize> + Send + Sync> {
        match self {
            Network::Namespaces(namespaces) => {
                let subnet = namespaces.subnet;
                let size = namespaces.members.len();
                Arc::new(move |source| match source.ip() {
                    IpAddr::V4(ip) if ip.octets()[..3] == subnet => {
                        let host = ip.octets()[3] as usize;
                        (1..=size).contains(&host).then(|| host - 1)
                    }
                    _ => None,
                })
            }
            Network::Loopback { .. } => Arc::new(|_| None),
        }
    }

    /// Cuts the listed directed links (from, to); every other link works. An empty list heals all.
    pub fn partition(&self, cut: &[(usize, usize)]) -> anyhow::Result<()> {
        let Network::Namespaces(namespaces) = self else {
            bail!("partitions need network namespaces");
        };
        namespaces.iptables(&["-F", CHAIN])?;
        for (from, to) in cut {
            let source = namespaces.ip(*from as u8 + 1).to_string();
            let port = (PROXY_PORT_BASE + *to as u16).to_string();
            namespaces.iptables(&["-A", CHAIN, "-s", &source, "-p", "tcp", "--dport", &port, "-j", "DROP"])?;
        }
        Ok(())
    }
}

impl Namespaces {
    fn create(size: usize, tag: u16) -> anyhow::Result<Namespaces> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("not running as root");
        }
        run("ip", &["-V"]).context("iproute2's `ip` is not usable")?;
        run("iptables", &["--version"]).context("`iptables` is not installed (Debian package iptables)")?;
        let subnet = [10, 200 + (tag / 250 % 50) as u8, (tag % 250) as u8];
        let hub = format!("kc{tag}h");
        let members: Vec<String> = (0..size).map(|index| format!("kc{tag}m{index}")).collect();
        let namespaces = Namespaces { subnet, hub, members };
        namespaces.build(size).inspect_err(|_| namespaces.remove())?;
        Ok(namespaces)
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], host)
    }

    fn build(&self, size: usize) -> anyhow::Result<()> {
        let hub = self.hub.as_str();
        run("ip", &["netns", "add", hub])?;
        in_ns(hub, &["ip", "link", "set", "lo", "up"])?;
        in_ns(hub, &["ip", "link", "add", "br0", "type", "bridge"])?;
        in_ns(hub, &["ip", "addr", "add", &format!("{}/24", self.ip(254)), "dev", "br0"])?;
        in_ns(hub, &["ip", "link", "set", "br0", "up"])?;
        for index in 0..size {
            let member = self.members[index].as_str();
            run("ip", &["netns", "add", member])?;
            let outside = format!("v{index}");
            run(
                "ip",
                &["link", "add", &outside, "netns", hub, "type", "veth", "peer", "name", "eth0", "netns", member],
            )?;
            in_ns(hub, &["ip", "link", "set", &outside, "master", "br0"])?;
            in_ns(hub, &["ip", "link", "set", &outside, "up"])?;
            in_ns(member, &["ip", "link", "set", "lo", "up"])?;
            in_ns(member, &["ip", "addr", "add", &format!("{}/24", self.ip(index as u8 + 1)), "dev", "eth0"])?;
            in_ns(member, &["ip", "link", "set", "eth0", "up"])?;
        }
        in_ns(hub, &["iptables", "-w", "-N", CHAIN])?;
        in_ns(hub, &["iptables", "-w", "-A", "INPUT", "-j", CHAIN])?;
        Ok(())
    }

    /// Moves the calling thread into the hub namespace: sockets it (and threads it starts) makes from now
    /// on live there. Returns the namespace it was in, for [`enter`].
    pub fn enter_hub(&self) -> anyhow::Result<File> {
        let original = File::open("/proc/thread-self/ns/net").context("reading this thread's network namespace")?;
        enter(&File::open(format!("/var/run/netns/{}", self.hub)).context("opening the hub namespace")?)?;
        Ok(original)
    }

    fn iptables(&self, arguments: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["iptables", "-w"];
        full.extend_from_slice(arguments);
        in_ns(&self.hub, &full)
    }

    fn remove(&self) {
        for name in self.members.iter().chain(std::iter::once(&self.hub)) {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

impl Network {
    /// The hub namespace, when there is one.
    pub fn namespaces(&self) -> Option<&Namespaces> {
        match self {
            Network::Namespaces(namespaces) => Some(namespaces),
            Network::Loopback { .. } => None,
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Moves the calling thread into the network namespace `file` refers to.
pub fn enter(file: &File) -> anyhow::Result<()> {
    // SAFETY: setns on a namespace file descriptor we hold open.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn in_ns(namespace: &str, command: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["netns", "exec", namespace];
    full.extend_from_slice(command);
    run("ip", &full)
}

fn run(program: &str, arguments: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program).args(arguments).output().with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!("{program} {}: {}", arguments.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
