//! What each member published about itself (its name and client URLs, etcd's `publish`), kept in the
//! backend's `members` table so every member lists the same cluster.

use crate::backend::MEMBERS;
use crate::error::StateError;
use keel_api::keelpb::MemberAttributes;
use prost::Message;
use redb::{ReadableTable, Table, WriteTransaction};

/// The apply step's member store, inside one backend write transaction.
pub struct MemberStore<'t> {
    members: Table<'t, u64, &'static [u8]>,
}

impl<'t> MemberStore<'t> {
    pub fn open(transaction: &'t WriteTransaction) -> Result<Self, StateError> {
        Ok(MemberStore { members: transaction.open_table(MEMBERS)? })
    }

    /// Records what a member published about itself.
    pub fn publish(&mut self, attributes: &MemberAttributes) -> Result<(), StateError> {
        self.members.insert(attributes.id, attributes.encode_to_vec().as_slice())?;
        Ok(())
    }
}

/// Every member's published attributes, in id order.
pub(crate) fn all(table: &impl ReadableTable<u64, &'static [u8]>) -> Result<Vec<MemberAttributes>, StateError> {
    let mut members = Vec::new();
    for item in table.iter()? {
        let (_, bytes) = item?;
        members.push(
            MemberAttributes::decode(bytes.value()).map_err(|error| StateError::Corrupt(format!("member: {error}")))?,
        );
    }
    Ok(members)
}
