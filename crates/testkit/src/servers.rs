//! Server processes, clusters, and the real client tools against them.

use crate::{MemberFlags, PEER_PORT, fresh_host};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process with its data dir; killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Option<Child>,
    /// `http://host:port` of its client URL.
    pub endpoint: String,
    /// Its loopback address (see [`fresh_host`]).
    pub host: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    program: PathBuf,
    arguments: Vec<String>,
    _scratch: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `keel` in a fresh data dir with `extra` flags and waits until it answers.
    pub fn keel(extra: &[&str]) -> Server {
        let scratch = tempfile::tempdir().unwrap();
        let data_dir = scratch.path().join("data");
        let mut server = Server::keel_in(&data_dir, extra);
        server._scratch = Some(scratch);
        server
    }

    /// Starts `keel` on `data_dir` (which may hold a previous run's data).
    pub fn keel_in(data_dir: &Path, extra: &[&str]) -> Server {
        Server::single(keel_binary(), "keel-test", data_dir, extra)
    }

    /// Starts Debian's real `etcd` (the reference) with the same shape of flags.
    pub fn etcd(extra: &[&str]) -> Server {
        let scratch = tempfile::tempdir().unwrap();
        let data_dir = scratch.path().join("data");
        let mut server = Server::single(etcd_binary(), "etcd-test", &data_dir, extra);
        server._scratch = Some(scratch);
        server
    }

    /// A one-member cluster of `program` on a fresh loopback address, started and ready.
    fn single(program: PathBuf, name: &str, data_dir: &Path, extra: &[&str]) -> Server {
        let host = fresh_host();
        let peer = format!("http://{host}:{PEER_PORT}");
        let flags = MemberFlags::on_host(name, data_dir.to_path_buf(), &host, &format!("{name}={peer}"));
        let mut server = Server::planned(program, &flags, &host, extra);
        server.start();
        server
    }

    /// A server for `flags`, not started yet.
    pub fn planned(program: PathBuf, flags: &MemberFlags, host: &str, extra: &[&str]) -> Server {
        std::fs::create_dir_all(flags.data_dir.parent().unwrap()).unwrap();
        let mut arguments = flags.arguments();
        arguments.extend(extra.iter().map(|argument| argument.to_string()));
        Server {
            child: None,
            endpoint: flags.client_url.clone(),
            host: host.to_string(),
            peer_url: flags.advertise_peer_url.clone(),
            data_dir: flags.data_dir.clone(),
            log_path: flags.data_dir.with_extension("log"),
            program,
            arguments,
            _scratch: None,
        }
    }

    /// `host:port` of its client URL (what etcdctl takes without a scheme).
    pub fn client_address(&self) -> String {
        self.endpoint.trim_start_matches("http://").to_string()
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn start(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Starts the process without waiting for it to serve.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        let child = Command::new(&self.program)
            .args(&self.arguments)
            .env("ETCD_UNSUPPORTED_ARCH", "")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.program.display()));
        self.child = Some(child);
    }

    /// Waits until the server answers a linearizable read; panics with its log if it exits or never does.
    pub fn wait_ready(&mut self) {
        if let Err(error) = self.wait_ready_within(Duration::from_secs(30)) {
            panic!("{error}; log:\n{}", self.log());
        }
    }

    /// Waits up to `timeout` until the server answers a linearizable read; says why not otherwise.
    pub fn wait_ready_within(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        loop {
            let child = self.child.as_mut().ok_or("the server is not running")?;
            if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
                return Err(format!("{} exited with {status}", self.program.display()));
            }
            if runtime.block_on(linearizable_get(&self.endpoint)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{} did not answer a linearizable read within {timeout:?}", self.endpoint));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then (after `patience`) SIGQUIT, so a Go program writes its goroutines to its log, and
    /// SIGKILL; returns how long it took to exit and what stopped it. Never panics.
    pub fn stop_within(&mut self, patience: Duration) -> (Duration, &'static str) {
        let started = Instant::now();
        let Some(mut child) = self.child.take() else { return (Duration::ZERO, "not running") };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        while started.elapsed() < patience {
            if !matches!(child.try_wait(), Ok(None)) {
                return (started.elapsed(), "SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = Command::new("kill").arg("-QUIT").arg(child.id().to_string()).status();
        std::thread::sleep(Duration::from_secs(2));
        let _ = child.kill();
        let _ = child.wait();
        (started.elapsed(), "SIGKILL (SIGTERM ignored)")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe_sigterm(child.id());
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the same server again on the same data dir and ports.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        self.start();
    }

    /// Starts the same server again without waiting for it (a cluster member waits for a quorum).
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        self.spawn();
    }

    /// Stops the server cleanly and starts it again on the same data dir and ports, off the async runtime.
    pub async fn stopped_and_restarted(mut self) -> Server {
        tokio::task::spawn_blocking(move || {
            self.stop();
            self.restart();
            self
        })
        .await
        .unwrap()
    }

    /// An `etcd-client` crate client (the `client` feature).
    #[cfg(feature = "client")]
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint.clone()], None).await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unsafe_sigterm(pid: u32) {
    let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

/// The `keel` binary: `KEEL_BIN`, else the one cargo built next to the running test (`target/<profile>/`).
pub fn keel_binary() -> PathBuf {
    built_binary("keel", "KEEL_BIN")
}

/// A binary of this workspace that `cargo test --workspace` builds next to the test executables.
fn built_binary(name: &str, variable: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return path.into();
    }
    let test = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let profile = test.parent().and_then(Path::parent).expect("a test executable under target/<profile>/deps");
    let path = profile.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries (cargo test --workspace builds them), or set {variable}",
        path.display()
    );
    path
}

/// Debian's etcd server binary; the test command installs it.
pub fn etcd_binary() -> PathBuf {
    for candidate in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!(
        "the real etcd (Debian package etcd-server) is not installed; run the README's test command, which installs it"
    )
}

/// Runs the real `etcdctl` (v3 API) against `endpoint`; returns (success, stdout, stderr).
pub fn etcdctl(endpoint: &str, arguments: &[&str]) -> (bool, String, String) {
    let output = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(arguments)
        .output()
        .expect("etcdctl is not installed; run the README's test command, which installs Debian's etcd-client");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

/// Like [`etcdctl`], with text fed on standard input (for `txn`).
pub fn etcdctl_with_input(endpoint: &str, arguments: &[&str], input: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl is not installed");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

/// Runs etcdctl, asserts that it succeeded, and returns its standard output.
pub fn etcdctl_run(endpoint: &str, arguments: &[&str]) -> String {
    let (success, stdout, stderr) = etcdctl(endpoint, arguments);
    assert!(success, "etcdctl {arguments:?} against {endpoint} failed: {stderr}");
    stdout
}

/// Runs etcdctl, asserts that it failed, and returns the message of its last `Error: ...` line.
pub fn etcdctl_failure(endpoint: &str, arguments: &[&str]) -> String {
    let (success, stdout, stderr) = etcdctl(endpoint, arguments);
    assert!(!success, "etcdctl {arguments:?} against {endpoint} should have failed; it printed {stdout}");
    error_message(&stderr)
}

/// The message of etcdctl's last `Error: ...` line.
pub fn error_message(stderr: &str) -> String {
    let line = stderr.lines().rev().find_map(|line| line.strip_prefix("Error: "));
    line.unwrap_or_else(|| panic!("no `Error:` line in {stderr}")).to_string()
}

/// Runs etcdctl with `-w json` and parses the output.
pub fn etcdctl_json(endpoint: &str, arguments: &[&str]) -> serde_json::Value {
    let output = etcdctl_run(endpoint, &[arguments, &["-w", "json"]].concat());
    serde_json::from_str(&output).unwrap_or_else(|error| panic!("{error} in {output}"))
}

/// `keelctl`, built next to `keel` by `cargo test --workspace` (or `KEELCTL_BIN`).
pub fn keelctl() -> PathBuf {
    built_binary("keelctl", "KEELCTL_BIN")
}

/// Runs keelctl, asserts that it succeeded, and returns what it printed.
pub fn keelctl_run(arguments: &[&str]) -> String {
    let output = Command::new(keelctl()).args(arguments).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "keelctl {arguments:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// GET `path`; returns the status code and the body.
pub fn http_get(endpoint: &str, path: &str) -> (u16, String) {
    try_http_get(endpoint, path).unwrap_or_else(|| panic!("GET {path} from {endpoint} failed"))
}

/// GET `path` over HTTP/1.0 (so that the answer is never chunked); None when the server cannot be read.
pub fn try_http_get(endpoint: &str, path: &str) -> Option<(u16, String)> {
    try_http_request(endpoint, path, "").map(|(status, _, body)| (status, body))
}

/// GET `path` with an `Accept` header; the status, the response's `Content-Type` and the body.
pub fn http_get_accepting(endpoint: &str, path: &str, accept: &str) -> (u16, String, String) {
    let (status, head, body) = try_http_request(endpoint, path, &format!("Accept: {accept}\r\n"))
        .unwrap_or_else(|| panic!("GET {path} from {endpoint} failed"));
    let content_type = head
        .lines()
        .find_map(|line| line.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("content-type")))
        .map_or(String::new(), |(_, value)| value.trim().to_string());
    (status, content_type, body)
}

/// One HTTP/1.0 GET with `headers` (whole lines); the status, the response head and the body.
fn try_http_request(endpoint: &str, path: &str, headers: &str) -> Option<(u16, String, String)> {
    use std::io::{Read, Write};
    let address = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n{headers}\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok())?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((status, head.to_string(), body.to_string()))
}

/// What a cluster member will be started with.
pub struct MemberPlan {
    pub name: String,
    pub data_dir: PathBuf,
    pub peer_url: String,
    pub initial_cluster: String,
}

/// A cluster of real `keel` members, each on its own loopback address with its own data dir.
pub struct Cluster {
    pub members: Vec<Server>,
    _scratch: Option<tempfile::TempDir>,
}

impl Cluster {
    pub fn start(size: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(size, extra, |_| {})
    }

    /// Starts a cluster after `prepare` has seen each member's plan (e.g. to restore its data dir).
    pub fn start_with(size: usize, extra: &[&str], prepare: impl FnMut(&MemberPlan)) -> Cluster {
        let scratch = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::plan(keel_binary(), scratch.path(), size, "etcd-cluster", extra, prepare);
        cluster._scratch = Some(scratch);
        cluster.start_all().unwrap_or_else(|error| panic!("{error}"));
        cluster
    }

    /// `size` members of `program` (keel or etcd) with data dirs `dir/m0`, `dir/m1`, ... (kept), not
    /// started yet; `prepare` sees each member's plan first.
    pub fn plan(
        program: PathBuf,
        dir: &Path,
        size: usize,
        token: &str,
        extra: &[&str],
        mut prepare: impl FnMut(&MemberPlan),
    ) -> Cluster {
        let hosts: Vec<String> = (0..size).map(|_| fresh_host()).collect();
        let initial: Vec<String> =
            hosts.iter().enumerate().map(|(index, host)| format!("m{index}=http://{host}:{PEER_PORT}")).collect();
        let initial = initial.join(",");
        let mut extra: Vec<&str> = extra.to_vec();
        extra.extend(["--initial-cluster-token", token]);
        let members = hosts
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let name = format!("m{index}");
                let flags = MemberFlags::on_host(&name, dir.join(&name), host, &initial);
                prepare(&MemberPlan {
                    name,
                    data_dir: flags.data_dir.clone(),
                    peer_url: flags.advertise_peer_url.clone(),
                    initial_cluster: initial.clone(),
                });
                Server::planned(program.clone(), &flags, host, &extra)
            })
            .collect();
        Cluster { members, _scratch: None }
    }

    /// Starts every member (members wait for a quorum before serving: all first, then each is waited
    /// for); on failure, says which member and ends with the tail of its log.
    pub fn start_all(&mut self) -> Result<(), String> {
        for member in &mut self.members {
            member.spawn();
        }
        for member in &mut self.members {
            if let Err(error) = member.wait_ready_within(Duration::from_secs(60)) {
                let log = member.log();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!("{error} (log {}):\n{}", member.log_path.display(), tail.join("\n")));
            }
        }
        Ok(())
    }

    /// Makes member `index` the leader (Maintenance.MoveLeader through the current leader).
    pub fn move_leader_to(&self, index: usize) -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.leader() {
                Some(leader) if leader == index => return Ok(()),
                Some(leader) => {
                    let target = runtime.block_on(status(&self.members[index].endpoint)).map(|(id, _)| id);
                    if let Some(target) = target {
                        let endpoint = self.members[leader].endpoint.clone();
                        runtime.block_on(async move {
                            use keel_api::etcdserverpb::{MoveLeaderRequest, maintenance_client::MaintenanceClient};
                            if let Ok(mut client) = MaintenanceClient::connect(endpoint).await {
                                let _ = client.move_leader(MoveLeaderRequest { target_id: target }).await;
                            }
                        });
                    }
                }
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(format!("member m{index} did not become the leader within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The index of the member every running member names as leader, once they agree.
    pub fn leader(&self) -> Option<usize> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut agreed = None;
            let mut ids = Vec::new();
            for member in &self.members {
                let status = status(&member.endpoint).await;
                if let Some((_, leader)) = status {
                    if agreed.is_some_and(|agreed| agreed != leader) || leader == 0 {
                        return None;
                    }
                    agreed = Some(leader);
                }
                ids.push(status.map(|(id, _)| id));
            }
            let leader = agreed?;
            ids.iter().position(|id| *id == Some(leader))
        })
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().filter(|member| member.child.is_some()).map(|member| member.endpoint.clone()).collect()
    }
}

/// Whether `endpoint` answers a linearizable read (over etcd's gRPC API, as any client would ask).
pub async fn linearizable_get(endpoint: &str) -> bool {
    use keel_api::etcdserverpb::{RangeRequest, kv_client::KvClient};
    let connect = KvClient::connect(endpoint.to_string());
    let Ok(Ok(mut client)) = tokio::time::timeout(Duration::from_secs(2), connect).await else { return false };
    let request = RangeRequest { key: b"ready-probe".to_vec(), ..Default::default() };
    matches!(tokio::time::timeout(Duration::from_secs(5), client.range(request)).await, Ok(Ok(_)))
}

/// (member id, leader id) as `endpoint`'s Maintenance.Status reports them.
pub async fn status(endpoint: &str) -> Option<(u64, u64)> {
    use keel_api::etcdserverpb::{StatusRequest, maintenance_client::MaintenanceClient};
    let connect = MaintenanceClient::connect(endpoint.to_string());
    let mut client = tokio::time::timeout(Duration::from_secs(2), connect).await.ok()?.ok()?;
    let status = tokio::time::timeout(Duration::from_secs(5), client.status(StatusRequest {})).await.ok()?.ok()?;
    let status = status.into_inner();
    Some((status.header?.member_id, status.leader))
}
