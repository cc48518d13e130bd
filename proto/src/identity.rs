//! Member and cluster ids, derived exactly as etcd derives them, so every member computes the same ids
//! from the same flags without talking (and a Keel member gets the id etcd would give it).

use sha1::{Digest, Sha1};

/// etcd's member id: SHA-1 over the sorted peer URLs (concatenated) and the cluster token; the first
/// 8 bytes, big-endian.
pub fn member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut sorted = peer_urls.to_vec();
    sorted.sort();
    let mut hasher = Sha1::new();
    hasher.update(sorted.concat().as_bytes());
    hasher.update(cluster_token.as_bytes());
    first_eight(&hasher.finalize())
}

/// etcd's cluster id: SHA-1 over the sorted member ids as 8-byte big-endian numbers.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut sorted = member_ids.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for id in sorted {
        hasher.update(id.to_be_bytes());
    }
    first_eight(&hasher.finalize())
}

/// A restored cluster's id: SHA-1 over the sorted member ids (as etcd's) followed by the SHA-256 of the
/// snapshot it was restored from. Every member restored from the same snapshot with the same
/// `--initial-cluster` computes the same id, and it differs from the id of the cluster the snapshot came
/// from, so a restored cluster never takes messages from the old one.
pub fn restored_cluster_id(member_ids: &[u64], snapshot_sha256: &[u8; 32]) -> u64 {
    let mut sorted = member_ids.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for id in sorted {
        hasher.update(id.to_be_bytes());
    }
    hasher.update(snapshot_sha256);
    first_eight(&hasher.finalize())
}

fn first_eight(digest: &[u8]) -> u64 {
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-1 has 20 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_etcds_well_known_single_member_ids() {
        // `etcd` with no flags: member 8e9e05c52164694d in cluster cdf818194e3a8c32.
        let member = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{member:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[member])), "cdf818194e3a8c32");
    }

    #[test]
    fn a_restored_cluster_gets_an_id_of_its_own_that_its_members_agree_on() {
        let members = [3, 1, 2];
        let snapshot = [7u8; 32];
        assert_ne!(restored_cluster_id(&members, &snapshot), cluster_id(&members));
        assert_eq!(restored_cluster_id(&members, &snapshot), restored_cluster_id(&[1, 2, 3], &snapshot));
        assert_ne!(restored_cluster_id(&members, &snapshot), restored_cluster_id(&members, &[8u8; 32]));
    }
}
