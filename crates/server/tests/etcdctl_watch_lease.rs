mod common;

use common::{error_message, etcdctl_failure as failure, etcdctl_json as json, etcdctl_run as run};

// Black-box tests of Watch and Lease: the real `etcdctl` 3.4 against the real `keel` binary, with exact
// expectations, and the same commands against the real `etcd`, outputs compared once the ids that must
// differ (cluster, member, Raft term, lease ids) are normalised. Long-running commands (`watch`,
// `lease keep-alive`) run as child processes whose output is collected as it comes.

use base64::Engine;
use common::{Server, etcdctl_with_input};
use serde_json::Value;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, sleep};
use std::time::{Duration, Instant};

fn decode_all(values: &Value) -> Vec<String> {
    let decode = |value: &Value| base64::engine::general_purpose::STANDARD.decode(value.as_str().unwrap()).unwrap();
    values.as_array().into_iter().flatten().map(|value| String::from_utf8(decode(value)).unwrap()).collect()
}

fn keys(response: &Value) -> Vec<String> {
    let kvs = response["kvs"].as_array().cloned().unwrap_or_default();
    decode_all(&Value::from(kvs.iter().map(|kv| kv["key"].clone()).collect::<Vec<_>>()))
}

fn revision(response: &Value) -> i64 {
    response["header"]["revision"].as_i64().unwrap_or_else(|| panic!("no revision in {response}"))
}

/// The id in `lease grant`'s output (text or json).
fn granted_id(output: &str) -> i64 {
    if let Ok(value) = serde_json::from_str::<Value>(output) {
        return value["ID"].as_i64().unwrap_or_else(|| panic!("no ID in {output}"));
    }
    let hex = output.strip_prefix("lease ").and_then(|rest| rest.split_whitespace().next());
    i64::from_str_radix(hex.unwrap_or_else(|| panic!("not a grant: {output}")), 16).unwrap()
}

/// Grants a lease; returns its id and the hex form etcdctl prints and accepts.
fn grant(endpoint: &str, ttl: &str) -> (i64, String) {
    let id = granted_id(&run(endpoint, &["lease", "grant", ttl]));
    (id, format!("{id:016x}"))
}

/// Removes what differs between two servers by construction: cluster and member ids, the Raft term, lease
/// ids (in grant order), remaining TTLs (a second apart depending on when the command ran), and the order
/// of a lease's attached keys (etcd lists them from a Go map, in no fixed order).
fn normalise(output: &str, leases: &[i64]) -> String {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|field, _| !["cluster_id", "member_id", "raft_term", "ttl"].contains(&field.as_str()));
                if let Some(Value::Array(keys)) = map.get_mut("keys") {
                    keys.sort_by_key(Value::to_string);
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let values: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(output).into_iter().collect();
    let mut text = match values {
        Ok(mut values) if !values.is_empty() => {
            values.iter_mut().for_each(strip);
            values.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
        }
        _ => output.to_string(),
    };
    if let Some(start) = text.find("remaining(")
        && let Some(length) = text[start..].find(')')
    {
        text.replace_range(start..start + length + 1, "remaining(...)");
    }
    if let Some(start) = text.find("attached keys([")
        && let Some(length) = text[start..].find("])")
    {
        let inner = start + "attached keys([".len();
        let mut keys: Vec<&str> = text[inner..start + length].split(' ').collect();
        keys.sort_unstable();
        let sorted = keys.join(" ");
        text.replace_range(inner..start + length, &sorted);
    }
    for (index, id) in leases.iter().enumerate() {
        text = text
            .replace(&format!("{id:016x}"), &format!("lease-{index}"))
            .replace(&id.to_string(), &format!("lease-{index}"));
    }
    text
}

fn assert_same<T: std::fmt::Debug>(steps: &[T], keel: &[String], etcd: &[String]) {
    assert_eq!(keel.len(), etcd.len());
    for ((step, ours), reference) in steps.iter().zip(keel).zip(etcd) {
        assert_eq!(ours, reference, "{step:?} differs (left keel, right etcd)");
    }
}

/// An etcdctl left running (`watch`, `lease keep-alive`), its output collected as it comes.
struct Background {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut source: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(count @ 1..) = source.read(&mut buffer) {
            into.lock().unwrap().extend_from_slice(&buffer[..count]);
        }
    })
}

impl Background {
    fn start(endpoint: &str, arguments: &[&str]) -> Background {
        let mut command = Command::new("etcdctl");
        command.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}")).args(arguments).stdin(Stdio::null());
        let mut child =
            command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("etcdctl is not installed");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Background { child, stdout, stderr, readers }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into()
    }

    /// Waits (up to 20 s) until standard output contains `text`.
    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.output().contains(text) {
            assert!(Instant::now() < deadline, "etcdctl never printed {text:?}; it printed {:?}", self.output());
            sleep(Duration::from_millis(50));
        }
    }

    /// Waits until something was printed and nothing more for 1.5 s (at most 20 s).
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut last, mut since) = (String::new(), Instant::now());
        while last.is_empty() || since.elapsed() < Duration::from_millis(1500) {
            assert!(Instant::now() < deadline, "etcdctl printed {last:?} and never settled");
            sleep(Duration::from_millis(100));
            let now = self.output();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
    }

    /// Waits up to `grace` for etcdctl to exit, else kills it. Returns (Some(success) if it exited by
    /// itself, None if killed, stdout, stderr).
    fn finish(mut self, grace: Duration) -> (Option<bool>, String, String) {
        let deadline = Instant::now() + grace;
        let mut status = self.child.try_wait().unwrap();
        while status.is_none() && Instant::now() < deadline {
            sleep(Duration::from_millis(50));
            status = self.child.try_wait().unwrap();
        }
        let exited = status.map(|status| status.success()); // None: still running, killed below
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.readers.drain(..).for_each(|reader| reader.join().unwrap());
        let text = |bytes: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&bytes.lock().unwrap()).into_owned();
        (exited, text(&self.stdout), text(&self.stderr))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A watch replaying history: its whole output once it stops growing (the watch itself stays open).
fn watch_history(endpoint: &str, arguments: &[&str]) -> String {
    let watcher = Background::start(endpoint, arguments);
    watcher.settle();
    let (exited, stdout, stderr) = watcher.finish(Duration::ZERO);
    assert_eq!(exited, None, "etcdctl {arguments:?} ended by itself: {stderr}");
    stdout
}

#[test]
fn watch_replays_history_like_etcd() {
    let writes: &[&[&str]] = &[
        &["put", "a", "1"],
        &["put", "a", "2"],
        &["put", "ab", "x"],
        &["del", "a"],
        &["put", "b", "y"],
        &["put", "a", "3"],
    ];
    let watches: &[&[&str]] = &[
        &["watch", "a", "--rev", "1"],
        &["watch", "--prefix", "a", "--rev", "3"],
        &["watch", "a", "--rev", "3", "--prev-kv"],
        &["watch", "--prefix", "", "--rev", "2", "-w", "json"],
        &["watch", "a", "b", "--rev", "4", "--prev-kv", "-w", "json"],
    ];
    let outputs = |endpoint: &str| -> Vec<String> {
        for write in writes {
            run(endpoint, write);
        }
        watches.iter().map(|arguments| normalise(&watch_history(endpoint, arguments), &[])).collect()
    };
    let (keel, etcd) = (Server::keel(&[]), Server::etcd(&[]));
    let ours = outputs(&keel.endpoint);
    assert_eq!(ours[0], "PUT\na\n1\nPUT\na\n2\nDELETE\na\n\nPUT\na\n3\n");
    assert_eq!(ours[1], "PUT\na\n2\nPUT\nab\nx\nDELETE\na\n\nPUT\na\n3\n");
    assert_eq!(ours[2], "PUT\na\n1\na\n2\nDELETE\na\n2\na\n\nPUT\na\n3\n");
    let all: Value = serde_json::from_str(&ours[3]).unwrap();
    let revisions: Vec<i64> =
        all["Events"].as_array().unwrap().iter().map(|event| event["kv"]["mod_revision"].as_i64().unwrap()).collect();
    assert_eq!(revisions, [2, 3, 4, 5, 6, 7], "{all}");
    assert_eq!(all["Header"]["revision"], 7);
    assert_same(watches, &ours, &outputs(&etcd.endpoint));
}

/// Two live watchers (text with previous values, json) see puts, deletes, a transaction and a range delete.
fn live_watch(endpoint: &str) -> (String, String) {
    let start = (json(endpoint, &["get", "live/"])["header"]["revision"].as_i64().unwrap() + 1).to_string();
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let text = Background::start(endpoint, &["watch", "--prefix", "live/", "--prev-kv", "--rev", &start]);
    let json_watcher = Background::start(endpoint, &["watch", "--prefix", "live/", "-w", "json", "--rev", &start]);
    // Starting at the next revision, neither watcher can miss the probe; once both print it, they are live.
    assert_eq!(run(endpoint, &["put", "live/probe", "ready"]), "OK\n");
    text.wait_for("live/probe");
    json_watcher.wait_for(&encode("live/probe"));
    for (write, printed) in [
        (&["put", "live/a", "1"][..], "OK\n"),
        (&["put", "live/a", "2"], "OK\n"),
        (&["put", "other", "x"], "OK\n"),
        (&["del", "live/a"], "1\n"),
    ] {
        assert_eq!(run(endpoint, write), printed);
    }
    let (success, _, stderr) = etcdctl_with_input(endpoint, &["txn"], "\nput live/b b\nput live/c c\n\n\n");
    assert!(success, "{stderr}");
    assert_eq!(run(endpoint, &["del", "--prefix", "live/"]), "3\n");
    assert_eq!(run(endpoint, &["put", "live/end", "done"]), "OK\n");
    text.wait_for("live/end\ndone\n");
    json_watcher.wait_for(&encode("live/end"));
    sleep(Duration::from_millis(500)); // anything printed after the last event would be a bug
    (text.finish(Duration::ZERO).1, json_watcher.finish(Duration::ZERO).1)
}

#[test]
fn live_watch_prints_events_as_they_happen_like_etcd() {
    let (keel, etcd) = (Server::keel(&[]), Server::etcd(&[]));
    let (text, json_output) = live_watch(&keel.endpoint);
    let expected = [
        "PUT\nlive/probe\nready\n",
        "PUT\nlive/a\n1\n",
        "PUT\nlive/a\n1\nlive/a\n2\n",
        "DELETE\nlive/a\n2\nlive/a\n\n",
        "PUT\nlive/b\nb\nPUT\nlive/c\nc\n",
        "DELETE\nlive/b\nb\nlive/b\n\nDELETE\nlive/c\nc\nlive/c\n\nDELETE\nlive/probe\nready\nlive/probe\n\n",
        "PUT\nlive/end\ndone\n",
    ];
    assert_eq!(text, expected.concat());
    let responses: Vec<Value> = json_output.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let sizes: Vec<usize> = responses.iter().map(|response| response["Events"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [1, 1, 1, 1, 2, 3, 1], "one response per revision: {json_output}");
    let revisions: Vec<i64> =
        responses.iter().map(|response| response["Header"]["revision"].as_i64().unwrap()).collect();
    assert_eq!(revisions, [2, 3, 4, 6, 7, 8, 9], "the write to `other` (5) is not watched: {json_output}");
    let (etcd_text, etcd_json) = live_watch(&etcd.endpoint);
    assert_same(
        &["text watch", "json watch"],
        &[text, normalise(&json_output, &[])],
        &[etcd_text, normalise(&etcd_json, &[])],
    );
}

#[test]
fn watch_from_a_compacted_revision_is_canceled_like_etcd() {
    let outputs = |endpoint: &str| -> Vec<String> {
        ["c1", "c2", "c3", "c4"].iter().for_each(|value| assert_eq!(run(endpoint, &["put", "k", value]), "OK\n")); // revisions 2..=5
        assert_eq!(run(endpoint, &["compaction", "4"]), "compacted revision 4\n");
        let (exited, stdout, stderr) =
            Background::start(endpoint, &["watch", "k", "--rev", "2"]).finish(Duration::from_secs(20));
        assert_eq!((exited, stdout.as_str()), (Some(false), ""), "{endpoint}: {stderr}");
        assert!(
            stderr.contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"),
            "{endpoint}: {stderr}"
        );
        assert_eq!(error_message(&stderr), "watch is canceled by the server");
        let (exited, canceled, stderr) =
            Background::start(endpoint, &["watch", "k", "--rev", "3", "-w", "json"]).finish(Duration::from_secs(20));
        assert_eq!(exited, Some(false), "{endpoint}: {stderr}");
        let response: Value = serde_json::from_str(&canceled).unwrap_or_else(|error| panic!("{error} in {canceled}"));
        assert_eq!(
            (&response["Canceled"], &response["CompactRevision"], &response["Events"]),
            (&Value::from(true), &Value::from(4), &serde_json::json!([]))
        );
        assert_eq!(watch_history(endpoint, &["watch", "k", "--rev", "4"]), "PUT\nk\nc3\nPUT\nk\nc4\n");
        vec![normalise(&canceled, &[])]
    };
    let (keel, etcd) = (Server::keel(&[]), Server::etcd(&[]));
    assert_same(&["canceled watch"], &outputs(&keel.endpoint), &outputs(&etcd.endpoint));
}

/// Every lease command and its errors; `{0}`, `{1}` are the first and second granted leases.
const LEASE_SCRIPT: &[&[&str]] = &[
    &["lease", "grant", "30"],
    &["lease", "grant", "60", "-w", "json"],
    &["lease", "list"],
    &["lease", "list", "-w", "json"],
    &["put", "--lease={0}", "k1", "v1"],
    &["put", "--lease={0}", "k2", "v2", "-w", "json"],
    &["put", "--lease={1}", "k3", "v3"],
    &["put", "k4", "v4"],
    &["get", "--prefix", "k", "-w", "json"],
    &["lease", "timetolive", "{0}", "--keys"],
    &["lease", "timetolive", "{0}", "--keys", "-w", "json"],
    &["lease", "keep-alive", "--once", "{0}"],
    &["lease", "keep-alive", "--once", "{1}", "-w", "json"],
    &["put", "k3", "unleased"],
    &["lease", "timetolive", "{1}", "--keys", "-w", "json"],
    &["lease", "revoke", "{0}"],
    &["get", "--prefix", "k", "-w", "json"],
    &["lease", "timetolive", "{0}", "--keys"],
    &["lease", "timetolive", "{0}", "-w", "json"],
    &["lease", "revoke", "{0}"],
    &["lease", "revoke", "1234"],
    &["lease", "timetolive", "1234"],
    &["put", "--lease=1234", "k", "v"],
    &["put", "--lease={0}", "k", "v"],
    &["lease", "keep-alive", "--once", "1234"],
    &["lease", "keep-alive", "1234"],
    &["lease", "revoke", "{1}", "-w", "json"],
    &["lease", "list"],
    &["lease", "list", "-w", "json"],
    &["lease", "grant", "1"],
    &["lease", "grant", "1", "-w", "json"],
];

fn lease_script(endpoint: &str) -> Vec<String> {
    let mut leases: Vec<i64> = Vec::new();
    let mut outcomes = Vec::new();
    for step in LEASE_SCRIPT {
        let substitute = |argument: &&str| {
            (0..leases.len()).fold(argument.to_string(), |text, index| {
                text.replace(&format!("{{{index}}}"), &format!("{:x}", leases[index]))
            })
        };
        let arguments: Vec<String> = step.iter().map(substitute).collect();
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        // Through a child with a deadline: a keep-alive that never ends must fail the test, not hang it.
        let (exited, stdout, stderr) = Background::start(endpoint, &arguments).finish(Duration::from_secs(20));
        let success = exited.unwrap_or_else(|| panic!("etcdctl {arguments:?} did not end: {stdout}{stderr}"));
        if success && step[..2] == ["lease", "grant"] {
            leases.push(granted_id(&stdout));
        }
        outcomes.push(if success { normalise(&stdout, &leases) } else { format!("error: {}", error_message(&stderr)) });
    }
    outcomes
}

#[test]
fn lease_commands_match_etcd() {
    let (keel, etcd) = (Server::keel(&[]), Server::etcd(&[]));
    let ours = lease_script(&keel.endpoint);
    let not_found = "error: etcdserver: requested lease not found";
    let expectations = [
        (0, "lease lease-0 granted with TTL(30s)\n"),
        (2, "found 2 leases\nlease-0\nlease-1\n"),
        (9, "lease lease-0 granted with TTL(30s), remaining(...), attached keys([k1 k2])\n"),
        (11, "lease lease-0 keepalived with TTL(30)\n"),
        (15, "lease lease-0 revoked\n"),
        (17, "lease lease-0 already expired\n"),
        (19, "error: failed to revoke lease (etcdserver: requested lease not found)"),
        (21, "lease 0000000000001234 already expired\n"),
        (22, not_found),
        (23, not_found),
        (24, not_found),
        (25, "lease 0000000000001234 expired or revoked.\n"),
        (27, "found 0 leases\n"),
        (29, "lease lease-2 granted with TTL(2s)\n"),
    ];
    for (step, expected) in expectations {
        assert_eq!(ours[step], expected, "keel, {:?}", LEASE_SCRIPT[step]);
    }
    assert_same(LEASE_SCRIPT, &ours, &lease_script(&etcd.endpoint));
}

fn check_lease_lifecycle(endpoint: &str) {
    let (id, hex) = grant(endpoint, "30");
    ["k1", "k2"]
        .iter()
        .for_each(|key| assert_eq!(run(endpoint, &["put", &format!("--lease={hex}"), key, "v"]), "OK\n"));
    run(endpoint, &["put", "k3", "v"]);
    let live = json(endpoint, &["lease", "timetolive", &hex, "--keys"]);
    assert_eq!((live["id"].as_i64(), live["granted-ttl"].as_i64()), (Some(id), Some(30)), "{endpoint}: {live}");
    assert!((20..=30).contains(&live["ttl"].as_i64().unwrap()), "{endpoint}: {live}");
    let mut attached = decode_all(&live["keys"]);
    attached.sort(); // etcd lists a lease's keys in no fixed order
    assert_eq!(attached, ["k1", "k2"]);
    assert_eq!(json(endpoint, &["get", "k1"])["kvs"][0]["lease"].as_i64(), Some(id));
    assert_eq!(json(endpoint, &["get", "k3"])["kvs"][0].get("lease"), None);
    assert_eq!(run(endpoint, &["lease", "list"]), format!("found 1 leases\n{hex}\n"));

    let before = revision(&json(endpoint, &["get", "k3"]));
    assert_eq!(run(endpoint, &["lease", "revoke", &hex]), format!("lease {hex} revoked\n"));
    let after = json(endpoint, &["get", "--prefix", "k"]);
    assert_eq!(
        (revision(&after), keys(&after)),
        (before + 1, vec!["k3".to_string()]),
        "{endpoint}: both keys go in one revision"
    );
    assert_eq!(run(endpoint, &["lease", "timetolive", &hex]), format!("lease {hex} already expired\n"));
    let expired = json(endpoint, &["lease", "timetolive", &hex]);
    assert_eq!(
        (expired["ttl"].as_i64(), expired["granted-ttl"].as_i64()),
        (Some(-1), Some(0)),
        "{endpoint}: {expired}"
    );
    assert_eq!(run(endpoint, &["lease", "list"]), "found 0 leases\n");
    let not_found = "etcdserver: requested lease not found";
    assert_eq!(failure(endpoint, &["lease", "revoke", &hex]), format!("failed to revoke lease ({not_found})"));
    assert_eq!(failure(endpoint, &["put", &format!("--lease={hex}"), "k1", "v"]), not_found);
    assert_eq!(revision(&json(endpoint, &["get", "k1"])), before + 1, "{endpoint}: failed requests write nothing");
}

#[test]
fn lease_time_to_live_list_and_revoke() {
    check_lease_lifecycle(&Server::keel(&[]).endpoint);
    check_lease_lifecycle(&Server::etcd(&[]).endpoint);
}

/// Polls (up to `within`) until `get key` prints nothing.
fn wait_until_gone(endpoint: &str, key: &str, within: Duration) {
    let start = Instant::now();
    while !run(endpoint, &["get", key]).is_empty() {
        assert!(start.elapsed() < within, "{endpoint}: {key} still there after {within:?}");
        sleep(Duration::from_millis(100));
    }
}

fn check_keep_alive(endpoint: &str) {
    let (_, hex) = grant(endpoint, "3");
    run(endpoint, &["put", &format!("--lease={hex}"), "kept", "alive"]);
    let keep_alive = Background::start(endpoint, &["lease", "keep-alive", &hex]);
    sleep(Duration::from_secs(8)); // well over twice the TTL
    assert_eq!(run(endpoint, &["get", "kept"]), "kept\nalive\n", "{endpoint}: the keep-alive did not keep the key");
    let (exited, output, stderr) = keep_alive.finish(Duration::ZERO);
    assert_eq!(exited, None, "{endpoint}: keep-alive ended by itself: {output}{stderr}");
    let line = format!("lease {hex} keepalived with TTL(3)");
    assert!(output.lines().count() >= 3 && output.lines().all(|printed| printed == line), "{endpoint}: {output}");
    wait_until_gone(endpoint, "kept", Duration::from_secs(10));
    assert_eq!(run(endpoint, &["lease", "timetolive", &hex]), format!("lease {hex} already expired\n"));
}

#[test]
fn keep_alive_keeps_the_key_until_it_stops() {
    check_keep_alive(&Server::keel(&[]).endpoint);
    check_keep_alive(&Server::etcd(&[]).endpoint);
}

fn check_expiry(endpoint: &str) {
    let granted = Instant::now();
    let (_, hex) = grant(endpoint, "3");
    ["e1", "e2"]
        .iter()
        .for_each(|key| assert_eq!(run(endpoint, &["put", &format!("--lease={hex}"), key, "v"]), "OK\n"));
    run(endpoint, &["put", "e3", "stays"]);
    let before = revision(&json(endpoint, &["get", "e1"]));
    assert_eq!(json(endpoint, &["lease", "timetolive", &hex])["granted-ttl"], 3);
    wait_until_gone(endpoint, "e1", Duration::from_secs(12));
    assert!(granted.elapsed() >= Duration::from_secs(2), "{endpoint}: expired after {:?}, TTL 3 s", granted.elapsed());
    let after = json(endpoint, &["get", "--prefix", "e"]);
    assert_eq!(
        (revision(&after), keys(&after)),
        (before + 1, vec!["e3".to_string()]),
        "{endpoint}: one revision for the expiry"
    );
    assert_eq!(run(endpoint, &["lease", "timetolive", &hex]), format!("lease {hex} already expired\n"));
    assert_eq!(run(endpoint, &["lease", "list"]), "found 0 leases\n");
    assert_eq!(failure(endpoint, &["lease", "keep-alive", "--once", &hex]), "etcdserver: requested lease not found");
}

#[test]
fn a_lease_expires_without_keep_alive() {
    check_expiry(&Server::keel(&[]).endpoint);
    check_expiry(&Server::etcd(&[]).endpoint);
}

fn check_restart(server: &mut Server) {
    let endpoint = server.endpoint.clone();
    let (id, hex) = grant(&endpoint, "30");
    run(&endpoint, &["put", &format!("--lease={hex}"), "survivor", "v"]);
    sleep(Duration::from_secs(2));
    server.stop();
    server.restart();
    assert_eq!(run(&endpoint, &["get", "survivor"]), "survivor\nv\n");
    assert_eq!(json(&endpoint, &["get", "survivor"])["kvs"][0]["lease"].as_i64(), Some(id));
    let live = json(&endpoint, &["lease", "timetolive", &hex, "--keys"]);
    assert_eq!(
        (live["granted-ttl"].as_i64(), decode_all(&live["keys"])),
        (Some(30), vec!["survivor".to_string()]),
        "{endpoint}: {live}"
    );
    assert!((1..=31).contains(&live["ttl"].as_i64().unwrap()), "{endpoint}: {live}");
    assert_eq!(run(&endpoint, &["lease", "list"]), format!("found 1 leases\n{hex}\n"));
    assert_eq!(run(&endpoint, &["lease", "revoke", &hex]), format!("lease {hex} revoked\n"));
    assert_eq!(run(&endpoint, &["get", "survivor"]), "");
}

#[test]
fn leases_and_their_keys_survive_a_restart() {
    check_restart(&mut Server::keel(&[]));
    check_restart(&mut Server::etcd(&[]));
}
