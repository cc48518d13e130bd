//! Space management with the real etcdctl, side by side with the real etcd: a small quota fills, the
//! NOSPACE alarm rises on every member's view, puts fail with etcd's exact error while reads and deletes
//! work, and the documented recovery (compact, defrag, alarm disarm) brings writes back.

mod common;

use common::{Server, error_message, etcdctl, etcdctl_json, etcdctl_run, etcdctl_with_input};

const QUOTA: &str = "16777216";

/// Overwrites one key with 100 KiB values until a put fails (as etcd's documentation fills a quota).
/// Returns how many puts succeeded and the error of the first that failed.
fn big_value() -> String {
    (0..100 * 1024).map(|index| char::from(b'a' + (index % 26) as u8)).collect()
}

fn fill(endpoint: &str) -> (usize, String) {
    let value = big_value();
    for accepted in 0..1000 {
        let (success, _, stderr) = etcdctl_with_input(endpoint, &["put", "big"], &value);
        if !success {
            return (accepted, error_message(&stderr));
        }
    }
    panic!("1000 puts of 100 KiB fit in a 16 MiB quota");
}

/// Replaces member ids (decimal, as alarms print them) by a placeholder.
fn without_member_id(text: &str, member_id: u64) -> String {
    text.replace(&member_id.to_string(), "<member>")
}

/// The whole sequence on one server; returns what etcdctl printed at each step, member ids removed.
fn scenario(endpoint: &str) -> Vec<String> {
    let member_id =
        etcdctl_json(endpoint, &["endpoint", "status"])[0]["Status"]["header"]["member_id"].as_u64().unwrap();
    let clean = |text: String| without_member_id(&text, member_id);
    let mut transcript = Vec::new();
    etcdctl_run(endpoint, &["put", "small", "kept"]);
    let (accepted, error) = fill(endpoint);
    assert!(accepted > 50, "only {accepted} puts fit");
    transcript.push(error);
    transcript.push(clean(etcdctl_run(endpoint, &["alarm", "list"])));
    let status = etcdctl_json(endpoint, &["endpoint", "status"]);
    transcript.push(clean(status[0]["Status"]["errors"].to_string()));
    // Reads, deletes and delete-only txns still work; anything that adds does not.
    transcript.push(etcdctl_run(endpoint, &["get", "small", "--print-value-only"]));
    transcript.push(etcdctl_run(endpoint, &["del", "small"]));
    let (success, stdout, stderr) = etcdctl_with_input(endpoint, &["txn"], "\ndel nothing\n\n\n");
    assert!(success, "a delete-only txn is refused: {stderr}");
    transcript.push(stdout);
    let (success, _, stderr) = etcdctl(endpoint, &["put", "tiny", "x"]);
    assert!(!success);
    transcript.push(error_message(&stderr));
    // (A lease grant is checked against the quota with a cost of 64 bytes: whether it fits depends on
    // where the fill stopped, on either server, so it is not compared here.)
    // Disarming alone does not help while the file is still full: a put that did not fit before raises the
    // alarm again (a tiny one might still fit, on either server, depending on where the fill stopped).
    transcript.push(clean(etcdctl_run(endpoint, &["alarm", "disarm"])));
    let (success, _, stderr) = etcdctl_with_input(endpoint, &["put", "big"], &big_value());
    assert!(!success, "a 100 KiB put fitted after the disarm");
    transcript.push(error_message(&stderr));
    // The recovery etcd documents: compact the history away, defragment, disarm.
    let revision = etcdctl_json(endpoint, &["endpoint", "status"])[0]["Status"]["header"]["revision"].as_i64().unwrap();
    transcript.push(etcdctl_run(endpoint, &["compact", &revision.to_string()]).replace(&revision.to_string(), "<rev>"));
    let before = etcdctl_json(endpoint, &["endpoint", "status"])[0]["Status"]["dbSize"].as_i64().unwrap();
    transcript.push(etcdctl_run(endpoint, &["defrag"]).replace(endpoint.trim_start_matches("http://"), "<endpoint>"));
    let after = etcdctl_json(endpoint, &["endpoint", "status"])[0]["Status"]["dbSize"].as_i64().unwrap();
    assert!(after < before / 4, "defrag left {after} of {before} bytes");
    transcript.push(clean(etcdctl_run(endpoint, &["alarm", "disarm"])));
    transcript.push(etcdctl_run(endpoint, &["alarm", "list"]));
    transcript.push(etcdctl_run(endpoint, &["put", "tiny", "x"]));
    transcript.push(etcdctl_run(endpoint, &["get", "big", "--print-value-only"]).len().to_string());
    transcript
}

#[test]
fn a_full_quota_raises_nospace_and_recovers_as_in_etcd() {
    let etcd = Server::etcd(&["--quota-backend-bytes", QUOTA]);
    let expected = scenario(&etcd.endpoint);
    drop(etcd);
    assert_eq!(
        expected[0], "etcdserver: mvcc: database space exceeded",
        "the reference behaved unexpectedly: {expected:#?}"
    );
    let keel = Server::keel(&["--quota-backend-bytes", QUOTA]);
    let actual = scenario(&keel.endpoint);
    for (step, (expected, actual)) in expected.iter().zip(&actual).enumerate() {
        assert_eq!(actual, expected, "step {step}");
    }
}

#[test]
fn nospace_raised_through_one_member_holds_on_every_member() {
    let cluster = common::Cluster::start(3, &["--quota-backend-bytes", QUOTA]);
    let [first, second, third] = [0, 1, 2].map(|index| cluster.members[index].endpoint.clone());
    let (_, error) = fill(&first);
    assert_eq!(error, "etcdserver: mvcc: database space exceeded");
    let first_id = etcdctl_json(&first, &["endpoint", "status"])[0]["Status"]["header"]["member_id"].as_u64().unwrap();
    // Every member knows the alarm (it went through the log) and refuses puts. (A member whose own file
    // is over the quota raises its own alarm too when asked to put, as etcd's members do.)
    for endpoint in [&second, &third] {
        let alarms = etcdctl_run(endpoint, &["alarm", "list"]);
        assert!(alarms.contains(&format!("memberID:{first_id} alarm:NOSPACE \n")), "{alarms}");
        let (success, _, stderr) = etcdctl(endpoint, &["put", "elsewhere", "x"]);
        assert!(!success);
        assert_eq!(error_message(&stderr), "etcdserver: mvcc: database space exceeded");
        assert_eq!(etcdctl_run(endpoint, &["get", "big", "--print-value-only"]).len(), 100 * 1024 + 1);
    }
}
