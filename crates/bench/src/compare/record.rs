//! What `compare` records: JSON files set key by key, JSON lines, and facts read from `/proc` and the disk.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// A JSON object in a file, set one dotted key at a time (written through a temporary file).
pub struct JsonFile(PathBuf);

impl JsonFile {
    pub fn new(path: PathBuf) -> Self {
        JsonFile(path)
    }

    pub fn set(&self, key: &str, value: Value) -> anyhow::Result<()> {
        let mut data: Value = std::fs::read(&self.0)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_else(|| Value::Object(Default::default()));
        let parts: Vec<&str> = key.split('.').collect();
        let mut node = &mut data;
        for part in &parts[..parts.len() - 1] {
            let object = node.as_object_mut().expect("an object");
            node = object.entry(part.to_string()).or_insert_with(|| Value::Object(Default::default()));
        }
        node.as_object_mut().expect("an object").insert(parts[parts.len() - 1].to_string(), value);
        let temporary = self.0.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(&data)?)?;
        std::fs::rename(&temporary, &self.0)?;
        Ok(())
    }
}

/// Appends one JSON object as a line.
pub fn append_line(path: &Path, value: &Value) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(file, "{}", serde_json::to_string(value)?)?;
    Ok(())
}

/// A `/proc/<pid>/status` field in kB (0 when the process is gone).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Whether `pid` runs (and is not a zombie).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| !status.lines().any(|line| line.starts_with("State:") && line.contains('Z')))
}

/// A file's size in bytes (0 when absent).
pub fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|metadata| metadata.len()).unwrap_or(0)
}

/// Bytes allocated on disk for everything under `path` (`du -s -B1`).
pub fn directory_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(metadata) = std::fs::symlink_metadata(path) else { return 0 };
    let own = metadata.blocks() * 512;
    if !metadata.is_dir() {
        return own;
    }
    let children =
        std::fs::read_dir(path).map(|entries| entries.flatten().map(|entry| directory_bytes(&entry.path())).sum());
    own + children.unwrap_or(0)
}

/// Now, as `2026-12-04T17:40:00Z`.
pub fn now_utc() -> String {
    utc(std::time::SystemTime::now())
}

/// When `path` was last modified, as [`now_utc`] writes it ("?" when unknown).
pub fn modified_utc(path: &Path) -> String {
    std::fs::metadata(path).and_then(|metadata| metadata.modified()).map_or("?".to_string(), utc)
}

fn utc(time: std::time::SystemTime) -> String {
    let seconds = time.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Now, as a directory name: `20261204-174000`.
pub fn timestamp_for_path() -> String {
    now_utc().replace(['-', ':'], "").replace('T', "-").trim_end_matches('Z').to_string()
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_json_files() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_791), (2026, 12, 4));
        let dir = tempfile::tempdir().unwrap();
        let file = JsonFile::new(dir.path().join("a.json"));
        file.set("1-member.keel.alive", Value::Bool(true)).unwrap();
        file.set("1-member.etcd.db_bytes", serde_json::json!([1, 2])).unwrap();
        let data: Value = serde_json::from_slice(&std::fs::read(dir.path().join("a.json")).unwrap()).unwrap();
        assert_eq!(data["1-member"]["keel"]["alive"], true);
        assert_eq!(data["1-member"]["etcd"]["db_bytes"][1], 2);
    }
}
