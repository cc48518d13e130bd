mod common;

use common::{error_message, etcdctl_failure as failure, etcdctl_json as json, etcdctl_run as run};

// Black-box tests: the real `etcdctl` 3.4 against the real `keel` binary, with exact expectations,
// and where etcd is the reference, the same commands against the real `etcd`, outputs compared.
//
// etcdctl 3.4 has no `get --count-only` (it arrived in 3.5); counts are checked through `-w json`'s
// `count` field instead.

use base64::Engine;
use common::{Server, etcdctl, etcdctl_with_input};
use serde_json::Value;

/// Runs `etcdctl txn` non-interactively; `input` is compares, blank line, success ops, blank line,
/// failure ops (each block ends with a blank line).
fn transaction(endpoint: &str, input: &str, extra: &[&str]) -> String {
    let mut arguments = vec!["txn"];
    arguments.extend(extra);
    let (success, stdout, stderr) = etcdctl_with_input(endpoint, &arguments, input);
    assert!(success, "txn {input:?} failed: {stderr}");
    stdout
}

fn decode(value: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.as_str().unwrap()).unwrap();
    String::from_utf8(bytes).unwrap()
}

fn keys(response: &Value) -> Vec<String> {
    let kvs = response["kvs"].as_array().cloned().unwrap_or_default();
    kvs.iter().map(|kv| decode(&kv["key"])).collect()
}

fn revision(response: &Value) -> i64 {
    response["header"]["revision"].as_i64().unwrap()
}

/// (create_revision, mod_revision, version, value) of the only key in a range response.
fn only_key(response: &Value) -> (i64, i64, i64, String) {
    let kvs = response["kvs"].as_array().unwrap();
    assert_eq!(kvs.len(), 1, "{response}");
    let kv = &kvs[0];
    let number = |field: &str| kv[field].as_i64().unwrap();
    (number("create_revision"), number("mod_revision"), number("version"), decode(&kv["value"]))
}

fn put_all(endpoint: &str, pairs: &[(&str, &str)]) {
    for (key, value) in pairs {
        assert_eq!(run(endpoint, &["put", key, value]), "OK\n");
    }
}

/// Drops what differs between two servers by construction: cluster and member ids, the Raft term.
fn normalise(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                *inner = normalise(inner.take());
                if key == "header"
                    && let Value::Object(header) = inner
                {
                    for field in ["cluster_id", "member_id", "raft_term"] {
                        header.remove(field);
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| *item = normalise(item.take())),
        _ => {}
    }
    value
}

#[test]
fn put_get_and_delete_a_single_key() {
    let server = Server::keel(&[]);
    let endpoint = server.endpoint.as_str();
    assert_eq!(run(endpoint, &["put", "greeting", "hello world"]), "OK\n");
    assert_eq!(run(endpoint, &["get", "greeting"]), "greeting\nhello world\n");
    assert_eq!(run(endpoint, &["get", "greeting", "--print-value-only"]), "hello world\n");
    assert_eq!(run(endpoint, &["get", "missing"]), "");
    let response = json(endpoint, &["get", "greeting"]);
    assert_eq!(keys(&response), ["greeting"]);
    assert_eq!(only_key(&response), (2, 2, 1, "hello world".to_string()));
    assert_eq!(response["count"], 1);
    assert_eq!(run(endpoint, &["del", "greeting"]), "1\n");
    assert_eq!(run(endpoint, &["del", "greeting"]), "0\n");
    assert_eq!(run(endpoint, &["get", "greeting"]), "");
    let empty = json(endpoint, &["get", "greeting"]);
    assert!(empty.get("kvs").is_none() && empty.get("count").is_none(), "{empty}");
}

#[test]
fn prefix_from_key_ranges_limits_and_output_modes() {
    let server = Server::keel(&[]);
    let endpoint = server.endpoint.as_str();
    put_all(endpoint, &[("a", "1"), ("ab", "2"), ("b", "3"), ("c", "4"), ("d", "5")]);
    assert_eq!(run(endpoint, &["get", "--prefix", "a"]), "a\n1\nab\n2\n");
    assert_eq!(keys(&json(endpoint, &["get", "--from-key", "b"])), ["b", "c", "d"]);
    assert_eq!(keys(&json(endpoint, &["get", "--from-key", ""])), ["a", "ab", "b", "c", "d"]);
    assert_eq!(run(endpoint, &["get", "a", "c"]), "a\n1\nab\n2\nb\n3\n");
    assert_eq!(run(endpoint, &["get", "a", "c", "--keys-only"]), "a\n\nab\n\nb\n\n");
    assert_eq!(run(endpoint, &["get", "a", "c", "--print-value-only"]), "1\n2\n3\n");

    let limited = json(endpoint, &["get", "--prefix", "", "--limit", "2"]);
    assert_eq!(keys(&limited), ["a", "ab"]);
    assert_eq!(limited["more"], true);
    assert_eq!(limited["count"], 5, "count is the whole range's size, not the limit");
    let unlimited = json(endpoint, &["get", "--prefix", ""]);
    assert!(unlimited.get("more").is_none(), "{unlimited}");
    assert_eq!(unlimited["count"], 5);
    assert_eq!(json(endpoint, &["get", "b", "d", "--limit", "1"])["count"], 2);

    let keys_only = json(endpoint, &["get", "a", "c", "--keys-only"]);
    assert_eq!(keys(&keys_only), ["a", "ab", "b"]);
    for kv in keys_only["kvs"].as_array().unwrap() {
        assert!(kv.get("value").is_none(), "keys-only returned a value: {kv}");
        assert!(kv["mod_revision"].as_i64().unwrap() > 0, "keys-only keeps the revisions: {kv}");
    }
}

/// b created first, then c, then a; c written 4 times, a 3 times, b twice; a last.
const SORT_DATA: &[(&str, &str)] =
    &[("b", "3"), ("c", "1"), ("a", "2"), ("c", "1"), ("c", "1"), ("c", "1"), ("b", "3"), ("a", "2"), ("a", "2")];

#[test]
fn sort_by_every_target_in_both_orders() {
    let server = Server::keel(&[]);
    let endpoint = server.endpoint.as_str();
    put_all(endpoint, SORT_DATA);
    let expectations = [
        ("KEY", ["a", "b", "c"]),
        ("VERSION", ["b", "a", "c"]),
        ("CREATE", ["b", "c", "a"]),
        ("MODIFY", ["c", "b", "a"]),
        ("VALUE", ["c", "a", "b"]),
    ];
    for (target, ascending) in expectations {
        let sort = format!("--sort-by={target}");
        let mut descending = ascending;
        descending.reverse();
        assert_eq!(keys(&json(endpoint, &["get", "--prefix", "", &sort])), ascending, "{target} default order");
        assert_eq!(keys(&json(endpoint, &["get", "--prefix", "", &sort, "--order=ASCEND"])), ascending, "{target}");
        assert_eq!(keys(&json(endpoint, &["get", "--prefix", "", &sort, "--order=DESCEND"])), descending, "{target}");
        let limited = json(endpoint, &["get", "--prefix", "", &sort, "--order=DESCEND", "--limit", "2"]);
        assert_eq!(keys(&limited), descending[..2], "{target}: sorting happens before the limit");
        assert_eq!(limited["count"], 3);
    }
    assert_eq!(run(endpoint, &["get", "--prefix", "", "--order=DESCEND", "--keys-only"]), "c\n\nb\n\na\n\n");
    assert_eq!(run(endpoint, &["get", "--prefix", "", "--sort-by=VALUE", "--print-value-only"]), "1\n2\n3\n");
}

#[test]
fn delete_ranges_report_counts_and_previous_values() {
    let server = Server::keel(&[]);
    let endpoint = server.endpoint.as_str();
    put_all(endpoint, &[("a1", "x"), ("a2", "y"), ("b", "z"), ("c", "w"), ("d", "v")]);
    assert_eq!(run(endpoint, &["del", "--prefix", "a", "--prev-kv"]), "2\na1\nx\na2\ny\n");
    assert_eq!(run(endpoint, &["get", "--prefix", "a"]), "");
    assert_eq!(run(endpoint, &["del", "--prefix", "a"]), "0\n");
    let deleted = json(endpoint, &["del", "b", "d", "--prev-kv"]);
    assert_eq!(deleted["deleted"], 2);
    assert_eq!(keys(&serde_json::json!({ "kvs": deleted["prev_kvs"] })), ["b", "c"]);
    assert_eq!(revision(&deleted), 8, "one revision for the whole range delete");
    let without_previous = json(endpoint, &["del", "--from-key", "a"]);
    assert_eq!(without_previous["deleted"], 1);
    assert!(without_previous.get("prev_kvs").is_none(), "{without_previous}");
    assert_eq!(json(endpoint, &["get", "--prefix", ""]).get("count"), None);
}

#[test]
fn revisions_and_key_metadata_across_put_overwrite_delete_and_recreate() {
    let server = Server::keel(&[]);
    let endpoint = server.endpoint.as_str();
    assert_eq!(revision(&json(endpoint, &["get", "k"])), 1, "an empty store is at revision 1");
    assert_eq!(revision(&json(endpoint, &["put", "k", "v1"])), 2);
    assert_eq!(only_key(&json(endpoint, &["get", "k"])), (2, 2, 1, "v1".into()));
    assert_eq!(revision(&json(endpoint, &["put", "k", "v2"])), 3);
    assert_eq!(only_key(&json(endpoint, &["get", "k"])), (2, 3, 2, "v2".into()));
    assert_eq!(revision(&json(endpoint, &["put", "other", "o"])), 4);
    assert_eq!(revision(&json(endpoint, &["del", "k"])), 5);
    assert_eq!(revision(&json(endpoint, &["del", "k"])), 5, "deleting nothing is not a write");
    assert_eq!(json(endpoint, &["get", "k"]).get("kvs"), None);
    assert_eq!(revision(&json(endpoint, &["put", "k", "v3"])), 6);
    assert_eq!(only_key(&json(endpoint, &["get", "k"])), (6, 6, 1, "v3".into()));

    assert_eq!(only_key(&json(endpoint, &["get", "k", "--rev", "2"])), (2, 2, 1, "v1".into()));
    assert_eq!(only_key(&json(endpoint, &["get", "k", "--rev", "4"])), (2, 3, 2, "v2".into()));
    assert_eq!(run(endpoint, &["get", "k", "--rev", "5"]), "");
    assert_eq!(run(endpoint, &["get", "k", "--rev", "1"]), "");
    let historical = json(endpoint, &["get", "--prefix", "", "--rev", "3"]);
    assert_eq!(keys(&historical), ["k"]);
    assert_eq!(revision(&historical), 6, "the header carries the current revision");
    assert_eq!(run(endpoint, &["get", "k", "--rev", "3", "--print-value-only"]), "v2\n");
}

#[test]
fn transaction_branches_and_output() {
    let server = Server::keel(&[]);
    let endpoint = server.endpoint.as_str();
    put_all(endpoint, &[("k", "v"), ("m", "10")]);
    let success = "value(\"k\") = \"v\"\nversion(\"k\") > \"0\"\n\nput k v2\nget k\n\nput k failed\n\n";
    assert_eq!(transaction(endpoint, success, &[]), "SUCCESS\n\nOK\n\nk\nv2\n");
    let failure = "value(\"k\") = \"v\"\n\nput k v3\n\nput other x\nget m\ndel nothing\n\n";
    assert_eq!(transaction(endpoint, failure, &[]), "FAILURE\n\nOK\n\nm\n10\n\n0\n");
    assert_eq!(run(endpoint, &["get", "k", "--print-value-only"]), "v2\n", "the failed branch left k alone");
    assert_eq!(run(endpoint, &["get", "other", "--print-value-only"]), "x\n");

    let output: Value =
        serde_json::from_str(&transaction(endpoint, success.replace("\"v\"", "\"v2\"").as_str(), &["-w", "json"]))
            .unwrap();
    assert_eq!(output["succeeded"], true);
    assert_eq!(revision(&output), 6, "one revision for the whole transaction");
    let responses = output["responses"].as_array().unwrap();
    assert_eq!(revision(&responses[0]["Response"]["ResponsePut"]), 6);
    assert_eq!(only_key(&responses[1]["Response"]["ResponseRange"]), (2, 6, 3, "v2".into()));

    let deleting: Value =
        serde_json::from_str(&transaction(endpoint, "mod(\"k\") > \"99\"\n\n\ndel k\n\n", &["-w", "json"])).unwrap();
    assert_eq!(deleting.get("succeeded"), None, "false is omitted: {deleting}");
    assert_eq!(deleting["responses"][0]["Response"]["ResponseDeleteRange"]["deleted"], 1);
    assert_eq!(run(endpoint, &["get", "k"]), "");
}

#[test]
fn transaction_compares_on_value_version_create_and_mod() {
    let server = Server::keel(&[]);
    let endpoint = server.endpoint.as_str();
    put_all(endpoint, &[("k", "v1"), ("k", "v2")]); // k: created at 2, modified at 3, version 2
    let cases = [
        ("value(\"k\") = \"v2\"", true),
        ("value(\"k\") = \"v1\"", false),
        ("value(\"k\") != \"v1\"", true),
        ("value(\"k\") > \"v1\"", true),
        ("value(\"k\") < \"v2\"", false),
        ("value(\"missing\") = \"\"", false),
        ("version(\"k\") = \"2\"", true),
        ("version(\"k\") > \"0\"", true),
        ("version(\"k\") > \"2\"", false),
        ("version(\"missing\") = \"0\"", true),
        ("create(\"k\") = \"2\"", true),
        ("create(\"k\") = \"0\"", false),
        ("create(\"missing\") = \"0\"", true),
        ("create(\"k\") < \"3\"", true),
        ("mod(\"k\") = \"3\"", true),
        ("mod(\"k\") < \"5\"", true),
        ("mod(\"k\") < \"3\"", false),
        ("mod(\"k\") != \"3\"", false),
        ("value(\"k\") = \"v2\"\nversion(\"k\") = \"2\"\nmod(\"k\") = \"3\"", true),
        ("value(\"k\") = \"v2\"\ncreate(\"k\") = \"3\"", false),
    ];
    for (compares, expected) in cases {
        let output = transaction(endpoint, &format!("{compares}\n\n\n\n"), &[]);
        let branch = if expected { "SUCCESS\n" } else { "FAILURE\n" };
        assert_eq!(output, branch, "compares: {compares}");
    }
    assert_eq!(revision(&json(endpoint, &["get", "k"])), 3, "read-only transactions do not write");
}

#[test]
fn compaction_and_revision_bounds() {
    let server = Server::keel(&[]);
    let endpoint = server.endpoint.as_str();
    assert_eq!(
        failure(endpoint, &["get", "k", "--rev", "2"]),
        "etcdserver: mvcc: required revision is a future revision"
    );
    put_all(endpoint, &[("k", "c1"), ("k", "c2"), ("k", "c3"), ("k", "c4")]); // revisions 2..=5
    assert_eq!(run(endpoint, &["compaction", "4"]), "compacted revision 4\n");
    let compacted = "etcdserver: mvcc: required revision has been compacted";
    assert_eq!(failure(endpoint, &["get", "k", "--rev", "3"]), compacted);
    assert_eq!(failure(endpoint, &["get", "k", "--rev", "2"]), compacted);
    assert_eq!(run(endpoint, &["get", "k", "--rev", "4", "--print-value-only"]), "c3\n");
    assert_eq!(only_key(&json(endpoint, &["get", "k", "--rev", "4"])), (2, 4, 3, "c3".into()));
    assert_eq!(run(endpoint, &["get", "k", "--rev", "5", "--print-value-only"]), "c4\n");
    assert_eq!(run(endpoint, &["get", "k", "--print-value-only"]), "c4\n");
    let future = "etcdserver: mvcc: required revision is a future revision";
    assert_eq!(failure(endpoint, &["get", "k", "--rev", "6"]), future);
    assert_eq!(failure(endpoint, &["compaction", "4"]), compacted);
    assert_eq!(failure(endpoint, &["compaction", "3"]), compacted);
    assert_eq!(failure(endpoint, &["compaction", "6"]), future);
    assert_eq!(run(endpoint, &["compaction", "5", "--physical"]), "compacted revision 5\n");
    assert_eq!(failure(endpoint, &["get", "k", "--rev", "4"]), compacted);
    assert_eq!(revision(&json(endpoint, &["get", "k", "--rev", "5"])), 5, "compaction is not a write");
}

/// `endpoint status` (json and table) and `endpoint health` against `endpoint` as etcdctl is given it.
fn check_endpoint_status(endpoint: &str) {
    let status = |endpoint: &str| -> Value {
        let all = json(endpoint, &["endpoint", "status"]);
        assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
        assert_eq!(all[0]["Endpoint"], endpoint);
        all[0]["Status"].clone()
    };
    let before = status(endpoint);
    assert_eq!(run(endpoint, &["put", "k", "v"]), "OK\n");
    let after = status(endpoint);
    let member_id = after["header"]["member_id"].as_u64().unwrap();
    assert_ne!(member_id, 0);
    assert_eq!(after["leader"].as_u64(), Some(member_id), "{after}");
    assert!(after["version"].as_str().unwrap().starts_with("3."), "{after}");
    assert!(after["dbSize"].as_i64().unwrap() > 0, "{after}");
    assert!(after["raftTerm"].as_u64().unwrap() >= 1, "{after}");
    let index = |status: &Value| status["raftIndex"].as_u64().unwrap();
    assert!(index(&after) > index(&before), "a put goes through the log: {before} then {after}");
    let applied = after["raftAppliedIndex"].as_u64().unwrap();
    assert!(applied >= 1 && applied <= index(&after), "{after}");
    assert_eq!(revision(&after), revision(&before) + 1);

    let table = run(endpoint, &["endpoint", "status", "-w", "table"]);
    let row = table.lines().find(|line| line.contains(endpoint)).unwrap_or_else(|| panic!("no row in {table}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[1], endpoint);
    assert_eq!(cells[2], format!("{member_id:x}"));
    assert_eq!((cells[5], cells[6], cells[10]), ("true", "false", ""), "leader, learner, errors: {row}");

    let health = json(endpoint, &["endpoint", "health"]);
    assert_eq!((&health[0]["endpoint"], &health[0]["health"]), (&Value::from(endpoint), &Value::from(true)));
    let (success, stdout, stderr) = etcdctl(endpoint, &["endpoint", "health"]);
    assert!(success, "{stderr}");
    let healthy = format!("{endpoint} is healthy: successfully committed proposal");
    assert!(stdout.contains(&healthy) || stderr.contains(&healthy), "{stdout}{stderr}");
}

#[test]
fn endpoint_status_and_health_with_a_bare_address() {
    let server = Server::keel(&[]);
    check_endpoint_status(&server.client_address());
}

#[test]
fn endpoint_status_and_health_with_a_url() {
    let server = Server::keel(&[]);
    check_endpoint_status(&server.endpoint);
}

#[test]
fn member_list_shows_the_single_member() {
    let server = Server::keel(&[]);
    let endpoint = server.endpoint.as_str();
    let peer = server.peer_url.clone();
    let list = json(endpoint, &["member", "list"]);
    let members = list["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{list}");
    let member = &members[0];
    let member_id = list["header"]["member_id"].as_u64().unwrap();
    assert_eq!(member["ID"].as_u64(), Some(member_id));
    assert_eq!(member["name"], "keel-test");
    assert_eq!(member["peerURLs"], serde_json::json!([peer]));
    assert_eq!(member["clientURLs"], serde_json::json!([endpoint]));
    assert!(member.get("isLearner").is_none(), "{member}");
    let simple = run(endpoint, &["member", "list"]);
    assert_eq!(simple, format!("{member_id:x}, started, keel-test, {peer}, {endpoint}, false\n"));
    let status = json(&server.client_address(), &["endpoint", "status"]);
    assert_eq!(status[0]["Status"]["leader"].as_u64(), Some(member_id));
}

#[test]
fn request_errors() {
    let server = Server::keel(&[]);
    let endpoint = server.endpoint.as_str();
    assert_eq!(failure(endpoint, &["put", "", "v"]), "etcdserver: key is not provided");
    assert_eq!(failure(endpoint, &["put", "--lease=1234", "k", "v"]), "etcdserver: requested lease not found");
    assert_eq!(failure(endpoint, &["put", "k", "--ignore-value"]), "etcdserver: key not found");
    let duplicate = etcdctl_with_input(endpoint, &["txn"], "\nput d 1\nput d 2\n\n\n");
    assert_eq!(error_message(&duplicate.2), "etcdserver: duplicate key given in txn request");
    assert_eq!(run(endpoint, &["get", "k"]), "");
    assert_eq!(revision(&json(endpoint, &["get", "k"])), 1, "no failed request wrote anything");
}

#[test]
fn request_too_large() {
    let server = Server::keel(&["--max-request-bytes", "1024"]);
    let endpoint = server.endpoint.as_str();
    let large = "x".repeat(2000);
    assert_eq!(failure(endpoint, &["put", "k", &large]), "etcdserver: request is too large");
    let small = "y".repeat(900);
    assert_eq!(run(endpoint, &["put", "k", &small]), "OK\n");
    assert_eq!(failure(endpoint, &["put", "k", &large]), "etcdserver: request is too large");
    assert_eq!(run(endpoint, &["get", "k", "--print-value-only"]), format!("{small}\n"));
    assert_eq!(revision(&json(endpoint, &["get", "k"])), 2);
}

/// One step of a script run against both servers.
enum Step<'a> {
    Command(Vec<&'a str>),
    Transaction(&'a str, &'a [&'a str]),
}

/// The outcome of every step: normalised json, other standard output (without `-w fields` ids),
/// or the error message.
fn outcomes(endpoint: &str, script: &[Step]) -> Vec<String> {
    let describe = |(success, stdout, stderr): (bool, String, String)| match success {
        false => format!("error: {}", error_message(&stderr)),
        true => match serde_json::from_str::<Value>(&stdout) {
            Ok(value) => normalise(value).to_string(),
            Err(_) => stdout
                .lines()
                .filter(|line| !["\"ClusterID\"", "\"MemberID\"", "\"RaftTerm\""].iter().any(|id| line.starts_with(id)))
                .collect::<Vec<_>>()
                .join("\n"),
        },
    };
    let outcome = |step: &Step| match step {
        Step::Command(arguments) => describe(etcdctl(endpoint, arguments)),
        Step::Transaction(input, extra) => describe(etcdctl_with_input(endpoint, &[&["txn"], *extra].concat(), input)),
    };
    script.iter().map(outcome).collect()
}

fn assert_same_as_etcd(script: &[Step]) {
    let keel = Server::keel(&[]);
    let etcd = Server::etcd(&[]);
    let (ours, reference) = (outcomes(&keel.endpoint, script), outcomes(&etcd.endpoint, script));
    for (index, (ours, reference)) in ours.iter().zip(&reference).enumerate() {
        assert_eq!(ours, reference, "step {index} differs (left keel, right etcd)");
    }
}

#[test]
fn reads_and_deletes_match_etcd() {
    let mut script: Vec<Step> = SORT_DATA.iter().map(|(key, value)| Step::Command(vec!["put", key, value])).collect();
    let json_reads: &[&[&str]] = &[
        &["get", "a", "-w", "json"],
        &["get", "--prefix", "", "--sort-by=MODIFY", "--order=DESCEND", "--limit", "2", "-w", "json"],
        &["get", "--prefix", "", "--sort-by=VALUE", "--order=ASCEND", "-w", "json"],
        &["get", "--prefix", "", "--sort-by=VERSION", "--order=DESCEND", "--limit", "1", "-w", "json"],
        &["get", "--prefix", "", "--sort-by=CREATE", "-w", "json"],
        &["get", "--prefix", "", "--order=DESCEND", "--keys-only", "-w", "json"],
        &["get", "a", "c", "--limit", "1", "-w", "json"],
        &["get", "--from-key", "b", "-w", "json"],
        &["get", "--prefix", "", "--rev", "5", "-w", "json"],
        &["get", "nothing", "-w", "json"],
        &["get", "--prefix", "", "--sort-by=KEY", "--order=DESCEND"],
        &["get", "--prefix", "", "-w", "fields"],
        &["put", "a", "new", "--prev-kv", "-w", "json"],
        &["del", "a", "c", "--prev-kv", "-w", "json"],
        &["del", "--prefix", "", "--prev-kv"],
        &["get", "--rev", "99", "a"],
        &["put", "", "v"],
    ];
    script.extend(json_reads.iter().map(|arguments| Step::Command(arguments.to_vec())));
    assert_same_as_etcd(&script);
}

#[test]
fn transactions_and_compaction_match_etcd() {
    assert_same_as_etcd(&[
        Step::Command(vec!["put", "k", "v"]),
        Step::Command(vec!["put", "m", "10"]),
        Step::Transaction(
            "value(\"k\") = \"v\"\nversion(\"k\") > \"0\"\n\nput k v2\nget k\n\nput k failed\n\n",
            &["-w", "json"],
        ),
        Step::Transaction(
            "value(\"k\") = \"v\"\n\nput k v3\n\nput other x\nget --prefix \"\"\ndel m\n\n",
            &["-w", "json"],
        ),
        Step::Transaction("mod(\"k\") < \"5\"\ncreate(\"k\") = \"0\"\n\nput x 1\n\ndel k\n\n", &[]),
        Step::Transaction("create(\"missing\") = \"0\"\n\nput missing here\nget missing\n\n\n", &[]),
        Step::Transaction("\n\nget --prefix \"\"\n\n\n", &["-w", "json"]),
        Step::Transaction("\nput d 1\nput d 2\n\n\n", &[]),
        Step::Command(vec!["compaction", "5"]),
        Step::Command(vec!["get", "--prefix", "", "--rev", "4"]),
        Step::Command(vec!["get", "--prefix", "", "--rev", "5", "-w", "json"]),
        Step::Command(vec!["compaction", "5"]),
        Step::Command(vec!["compaction", "50"]),
        Step::Command(vec!["put", "--lease=1234", "k", "v"]),
    ]);
}

/// The member list with the fields that must differ between two servers replaced.
fn member_list_shape(endpoint: &str) -> Value {
    let mut list = normalise(json(endpoint, &["member", "list"]));
    for member in list["members"].as_array_mut().unwrap() {
        member["ID"] = Value::from(1);
        member["name"] = Value::from("member");
        member["peerURLs"] = serde_json::json!(["peer"]);
        member["clientURLs"] = serde_json::json!(["client"]);
    }
    list
}

#[test]
fn member_list_json_matches_etcd() {
    let (keel, etcd) = (Server::keel(&[]), Server::etcd(&[]));
    assert_eq!(member_list_shape(&keel.endpoint), member_list_shape(&etcd.endpoint));
}
