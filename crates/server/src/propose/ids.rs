//! Request ids unique across members and restarts, as etcd's `idutil.Generator` makes them: the member
//! id's low 16 bits, then the start time in milliseconds (40 bits) shifted by 8, then a counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const SUFFIX_BITS: u32 = 48;
const SUFFIX_MASK: u64 = (1 << SUFFIX_BITS) - 1;

pub struct RequestIds {
    prefix: u64,
    suffix: AtomicU64,
}

impl RequestIds {
    pub fn new(member_id: u64) -> Self {
        let millis =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as u64).unwrap_or(0);
        RequestIds {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            suffix: AtomicU64::new((millis & ((1 << 40) - 1)) << 8),
        }
    }

    pub fn next(&self) -> u64 {
        let suffix = self.suffix.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        self.prefix | (suffix & SUFFIX_MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_member_and_increase() {
        let ids = RequestIds::new(0xabcd_1234);
        let first = ids.next();
        let second = ids.next();
        assert_eq!(first >> SUFFIX_BITS, 0x1234);
        assert_eq!(second, first + 1);
    }
}
