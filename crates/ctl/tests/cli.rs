//! keelctl's command line without a server: errors say what is wrong and what to do, with exit status 2.
//! (Its work against real clusters is tested in keel-server's `backup` and `keelctl` tests, which use
//! this binary.)

use std::process::Command;

fn keelctl(arguments: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_keelctl")).args(arguments).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn a_damaged_or_foreign_snapshot_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-snapshot.db");
    std::fs::write(&path, vec![7u8; 1000]).unwrap();
    let (code, text) = keelctl(&["snapshot", "status", &path.display().to_string()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("is not a snapshot's size"), "{text}");
    let target = dir.path().join("restored");
    let (code, text) =
        keelctl(&["snapshot", "restore", &path.display().to_string(), "--data-dir", &target.display().to_string()]);
    assert_eq!(code, 2, "{text}");
    assert!(!target.join("member/snap/db").exists(), "nothing restored from a bad file");
}

#[test]
fn restore_refuses_a_data_dir_in_use_and_an_unknown_member() {
    let dir = tempfile::tempdir().unwrap();
    let used = dir.path().join("used");
    std::fs::create_dir_all(used.join("member")).unwrap();
    let (code, text) = keelctl(&["snapshot", "restore", "x.snap", "--data-dir", &used.display().to_string()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("exists and is not empty"), "{text}");
    let (code, text) = keelctl(&[
        "snapshot",
        "restore",
        "x.snap",
        "--data-dir",
        &dir.path().join("new").display().to_string(),
        "--name",
        "c",
        "--initial-cluster",
        "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380",
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no member named \"c\""), "{text}");
}

#[test]
fn save_needs_a_reachable_member() {
    let (code, text) = keelctl(&["--endpoints", "127.0.0.1:1", "snapshot", "save", "/tmp/keelctl-never-written.snap"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot connect to http://127.0.0.1:1"), "{text}");
}
