//! The workloads. Keys are etcd benchmark-style: exactly `--key-size` bytes, naming a number in
//! `0..--key-space-size` (zero-padded decimal, so they sort like the numbers).

pub mod lease;
pub mod mixed;
pub mod put;
pub mod range;
pub mod watch;

use crate::connect::Connections;
use keel_api::etcdserverpb::PutRequest;
use rand::RngCore;

/// The key naming `number`, `size` bytes long.
pub fn key(number: u64, size: usize) -> Vec<u8> {
    format!("{number:0size$}").into_bytes()
}

/// Refuses key spaces whose numbers do not fit the key size.
pub fn check_key_space(key_size: usize, key_space_size: u64) -> anyhow::Result<()> {
    anyhow::ensure!(key_space_size > 0, "--key-space-size must be positive");
    let digits = (key_space_size - 1).max(1).ilog10() as usize + 1;
    anyhow::ensure!(
        digits <= key_size,
        "--key-size {key_size} cannot name {key_space_size} distinct keys; use --key-size {digits} or more"
    );
    Ok(())
}

/// A random value of `size` bytes (incompressible, as etcd's benchmark uses).
pub fn value(size: usize) -> Vec<u8> {
    let mut value = vec![0u8; size];
    rand::rng().fill_bytes(&mut value);
    value
}

/// Puts every key once (not measured), with up to 64 requests in flight.
pub async fn preload(connections: &Connections, keys: Vec<Vec<u8>>, value: &[u8]) -> anyhow::Result<()> {
    let keys = std::sync::Arc::new(keys);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..64 {
        let (keys, next, value) = (keys.clone(), next.clone(), value.to_vec());
        let mut kv = connections.kv(client);
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(key) = keys.get(index) else { return Ok::<(), tonic::Status>(()) };
                kv.put(PutRequest { key: key.clone(), value: value.clone(), ..Default::default() }).await?;
            }
        }));
    }
    for task in tasks {
        task.await?.map_err(|status| anyhow::anyhow!("preloading keys failed: {}", status.message()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_asked_size_and_sort_like_their_numbers() {
        assert_eq!(key(42, 8), b"00000042");
        assert!(key(9, 4) < key(10, 4));
        assert!(check_key_space(4, 10_000).is_ok());
        assert!(check_key_space(4, 10_001).is_err());
        assert!(check_key_space(1, 1).is_ok());
    }
}
