//! Starting the real `keel` binary (and, as the reference, the real `etcd`) for black-box tests.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the server to take), never the same one twice in a
/// test process: two servers started at once must not be handed one port (one would fail to bind, and its
/// readiness probe would reach the other).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A server process with its data dir; killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Option<Child>,
    pub endpoint: String,
    pub client_port: u16,
    pub peer_port: u16,
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
        let client_port = free_port();
        let peer_port = free_port();
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut arguments: Vec<String> = vec![
            "--name".into(),
            "keel-test".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client.clone(),
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer.clone(),
            "--initial-cluster".into(),
            format!("keel-test={peer}"),
        ];
        arguments.extend(extra.iter().map(|argument| argument.to_string()));
        Server::launch(env!("CARGO_BIN_EXE_keel").into(), arguments, data_dir, client_port, peer_port)
    }

    /// Starts Debian's real `etcd` (the reference) with the same shape of flags.
    pub fn etcd(extra: &[&str]) -> Server {
        let scratch = tempfile::tempdir().unwrap();
        let data_dir = scratch.path().join("data");
        let client_port = free_port();
        let peer_port = free_port();
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut arguments: Vec<String> = [
            "--name",
            "etcd-test",
            "--data-dir",
            &data_dir.display().to_string(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("etcd-test={peer}"),
        ]
        .iter()
        .map(|argument| argument.to_string())
        .collect();
        arguments.extend(extra.iter().map(|argument| argument.to_string()));
        let mut server = Server::launch(etcd_binary(), arguments, &data_dir, client_port, peer_port);
        server._scratch = Some(scratch);
        server
    }

    fn launch(program: PathBuf, arguments: Vec<String>, data_dir: &Path, client_port: u16, peer_port: u16) -> Server {
        std::fs::create_dir_all(data_dir.parent().unwrap()).unwrap();
        let log_path = data_dir.with_extension(format!("{client_port}.log"));
        let mut server = Server {
            child: None,
            endpoint: format!("http://127.0.0.1:{client_port}"),
            client_port,
            peer_port,
            data_dir: data_dir.to_path_buf(),
            log_path,
            program,
            arguments,
            _scratch: None,
        };
        server.start();
        server
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

    /// Waits until the server answers a linearizable read.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited with {status}; log:\n{}", self.log());
            }
            let endpoint = self.endpoint.clone();
            let ready = runtime.block_on(async move {
                let Ok(mut client) = etcd_client::Client::connect([endpoint], None).await else { return false };
                client.get("ready-probe", None).await.is_ok()
            });
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "server did not become ready; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// A cluster of real `keel` members on loopback ports, each with its own data dir.
/// `keelctl`, built next to `keel` by `cargo test --workspace`.
pub fn keelctl() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_keel")).with_file_name("keelctl");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p keel-ctl` (scripts/test.sh does)",
        path.display()
    );
    path
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

pub struct Cluster {
    pub members: Vec<Server>,
    _scratch: tempfile::TempDir,
}

impl Cluster {
    pub fn start(size: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(size, extra, |_| {})
    }

    /// Starts a cluster after `prepare` has seen each member's plan (e.g. to restore its data dir).
    pub fn start_with(size: usize, extra: &[&str], mut prepare: impl FnMut(&MemberPlan)) -> Cluster {
        let scratch = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(index, (_, peer))| format!("m{index}=http://127.0.0.1:{peer}")).collect();
        let initial = initial.join(",");
        let mut members: Vec<Server> = ports
            .iter()
            .enumerate()
            .map(|(index, (client, peer))| {
                let client_url = format!("http://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let data_dir = scratch.path().join(format!("m{index}"));
                let mut arguments: Vec<String> = [
                    "--name",
                    &format!("m{index}"),
                    "--data-dir",
                    &data_dir.display().to_string(),
                    "--listen-client-urls",
                    &client_url,
                    "--advertise-client-urls",
                    &client_url,
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                    "--initial-cluster",
                    &initial,
                ]
                .iter()
                .map(|argument| argument.to_string())
                .collect();
                arguments.extend(extra.iter().map(|argument| argument.to_string()));
                let log_path = data_dir.with_extension(format!("{client}.log"));
                prepare(&MemberPlan {
                    name: format!("m{index}"),
                    data_dir: data_dir.clone(),
                    peer_url,
                    initial_cluster: initial.clone(),
                });
                Server {
                    child: None,
                    endpoint: client_url,
                    client_port: *client,
                    peer_port: *peer,
                    data_dir,
                    log_path,
                    program: env!("CARGO_BIN_EXE_keel").into(),
                    arguments,
                    _scratch: None,
                }
            })
            .collect();
        // Members wait for a quorum before serving: start them all, then wait for each.
        for member in &mut members {
            member.spawn();
        }
        for member in &mut members {
            member.wait_ready();
        }
        Cluster { members, _scratch: scratch }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().filter(|member| member.child.is_some()).map(|member| member.endpoint.clone()).collect()
    }
}
