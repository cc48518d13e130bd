//! A store revision: the main revision counts committed write transactions, the sub revision counts the
//! changes inside one transaction (etcd's `revision{main, sub}`).

/// One change's position in the store's history. Ordered by main, then sub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The key under which the change is stored in the backend's `kv` table.
    pub(crate) fn storage_key(self) -> (u64, u64) {
        (self.main as u64, self.sub as u64)
    }
}
