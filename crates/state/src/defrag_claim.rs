//! The cluster-wide right to defragment: a member must hold it, committed through the log, before it
//! defragments by itself, so members take turns. Kept in the meta table; a claim expires (by the time the
//! claimant proposed with it, never by a clock read here) so a holder that died does not block the rest.

use crate::backend::meta;
use crate::error::StateError;
use keel_api::keelpb::DefragClaim;
use prost::Message;
use redb::{ReadableTable, Table};

/// Applies a claim on (or release of) the right; returns whether it was granted and who holds the right
/// afterwards (0: nobody).
pub(crate) fn apply(meta_table: &mut Table<'_, &str, &[u8]>, claim: &DefragClaim) -> Result<(bool, u64), StateError> {
    const KEY: &str = meta::DEFRAG_CLAIM;
    let current = meta_table.get(KEY)?.and_then(|value| DefragClaim::decode(value.value()).ok());
    let holder = current.filter(|held| held.member_id != 0 && held.expires_ms > claim.now_ms);
    let (granted, stored) = match (claim.release, holder) {
        (true, Some(held)) if held.member_id == claim.member_id => (true, None),
        (true, _) => (false, holder),
        (false, Some(held)) if held.member_id != claim.member_id => (false, Some(held)),
        (false, _) => (
            true,
            Some(DefragClaim {
                member_id: claim.member_id,
                release: false,
                now_ms: claim.now_ms,
                expires_ms: claim.expires_ms,
            }),
        ),
    };
    match stored {
        Some(held) => meta_table.insert(KEY, held.encode_to_vec().as_slice())?,
        None => meta_table.remove(KEY)?,
    };
    Ok((granted, stored.map_or(0, |held| held.member_id)))
}
