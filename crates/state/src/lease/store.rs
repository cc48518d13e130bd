//! The apply step's lease store: the `leases` and `lease_keys` tables inside one backend write
//! transaction. Granting, checkpointing and removing leases, and moving keys between leases (which the
//! key-value writes ask for through [`crate::mvcc::LeaseKeys`]). Revoking a lease is composed by apply:
//! the keys it holds are deleted through the MVCC store, then the lease is removed here.

use super::{LeaseChange, encode, keys, lookup, storage_id};
use crate::backend::{LEASE_KEYS, LEASES};
use crate::error::StateError;
use crate::mvcc::{LeaseKeys, LeaseLookup};
use keel_api::EtcdError;
use keel_api::keelpb::LeaseRecord;
use redb::{Table, WriteTransaction};

pub struct LeaseStore<'t> {
    leases: Table<'t, u64, &'static [u8]>,
    lease_keys: Table<'t, (u64, &'static [u8]), ()>,
    /// Grants, revocations and checkpoints made since the store was opened, in order.
    changes: Vec<LeaseChange>,
}

impl<'t> LeaseStore<'t> {
    pub fn open(transaction: &'t WriteTransaction) -> Result<Self, StateError> {
        Ok(LeaseStore {
            leases: transaction.open_table(LEASES)?,
            lease_keys: transaction.open_table(LEASE_KEYS)?,
            changes: Vec::new(),
        })
    }

    /// Grants lease `id` (already chosen and TTL already adjusted by the proposer).
    pub fn grant(&mut self, id: i64, ttl: i64) -> Result<(), StateError> {
        if lookup(&self.leases, id)?.is_some() {
            return Err(EtcdError::LeaseExists.into());
        }
        let record = LeaseRecord { id, ttl, remaining_ttl: 0 };
        self.leases.insert(storage_id(id), encode(&record).as_slice())?;
        self.changes.push(LeaseChange::Granted { id, ttl });
        Ok(())
    }

    /// The keys lease `id` holds, in key order; etcd's "lease not found" if there is no such lease.
    pub fn keys(&self, id: i64) -> Result<Vec<Vec<u8>>, StateError> {
        if lookup(&self.leases, id)?.is_none() {
            return Err(EtcdError::LeaseNotFound.into());
        }
        keys(&self.lease_keys, id)
    }

    /// Removes lease `id` once its keys are deleted (see [`LeaseStore::keys`]).
    pub fn remove(&mut self, id: i64) -> Result<(), StateError> {
        self.leases.remove(storage_id(id))?;
        self.changes.push(LeaseChange::Revoked { id });
        Ok(())
    }

    /// Records the remaining TTL the leader measured for lease `id` (unknown leases are skipped).
    pub fn checkpoint(&mut self, id: i64, remaining_ttl: i64) -> Result<(), StateError> {
        let Some(mut record) = lookup(&self.leases, id)? else { return Ok(()) };
        record.remaining_ttl = remaining_ttl;
        self.leases.insert(storage_id(id), encode(&record).as_slice())?;
        self.changes.push(LeaseChange::Checkpointed { id, remaining_ttl });
        Ok(())
    }

    /// Grants, revocations and checkpoints made since the store was opened, in order.
    pub fn take_changes(&mut self) -> Vec<LeaseChange> {
        std::mem::take(&mut self.changes)
    }
}

impl LeaseLookup for LeaseStore<'_> {
    fn lease_exists(&self, id: i64) -> Result<bool, StateError> {
        Ok(lookup(&self.leases, id)?.is_some())
    }
}

impl LeaseKeys for LeaseStore<'_> {
    fn attach(&mut self, key: &[u8], previous: i64, lease: i64) -> Result<(), StateError> {
        if previous == lease {
            return Ok(());
        }
        if previous != 0 {
            self.lease_keys.remove((storage_id(previous), key))?;
        }
        if lease != 0 {
            self.lease_keys.insert((storage_id(lease), key), ())?;
        }
        Ok(())
    }
}
