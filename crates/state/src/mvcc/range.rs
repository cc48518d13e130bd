//! `Range` with etcd's exact semantics for limit, count, more, sorting and revision filters.

use super::{KeySpan, Reader};
use crate::error::StateError;
use keel_api::EtcdError;
use keel_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use keel_api::mvccpb::KeyValue;
use std::cmp::Ordering;

/// Serves a range request from `reader`. The header carries only the revision; the caller fills in the
/// member's identity.
pub fn range(reader: &impl Reader, request: &RangeRequest) -> Result<RangeResponse, StateError> {
    let sort_order = SortOrder::try_from(request.sort_order).map_err(|_| EtcdError::InvalidSortOption)?;
    let sort_target = SortTarget::try_from(request.sort_target).map_err(|_| EtcdError::InvalidSortOption)?;
    let at = reader.resolve_revision(request.revision)?;
    let filtered = request.min_mod_revision != 0
        || request.max_mod_revision != 0
        || request.min_create_revision != 0
        || request.max_create_revision != 0;
    // Sorting and filtering need every key; otherwise fetch one more than the limit to learn `more`.
    let fetch_limit = match request.limit {
        limit if limit <= 0 || sort_order != SortOrder::None || filtered => usize::MAX,
        limit => limit as usize + 1,
    };

    let mut count = 0i64;
    let mut kvs = Vec::new();
    reader.scan(KeySpan::new(&request.key, &request.range_end), &mut |key, head| {
        if let Some(revision) = reader.visible(key, head, at)? {
            count += 1;
            if !request.count_only && kvs.len() < fetch_limit {
                kvs.push(revision);
            }
        }
        Ok(true)
    })?;
    let mut kvs =
        kvs.into_iter().map(|revision| reader.change_at(revision)).collect::<Result<Vec<KeyValue>, StateError>>()?;

    if filtered {
        kvs.retain(|kv| {
            (request.max_mod_revision == 0 || kv.mod_revision <= request.max_mod_revision)
                && (request.min_mod_revision == 0 || kv.mod_revision >= request.min_mod_revision)
                && (request.max_create_revision == 0 || kv.create_revision <= request.max_create_revision)
                && (request.min_create_revision == 0 || kv.create_revision >= request.min_create_revision)
        });
    }
    sort(&mut kvs, sort_order, sort_target);

    let mut more = false;
    if request.limit > 0 && kvs.len() > request.limit as usize {
        kvs.truncate(request.limit as usize);
        more = true;
    }
    if request.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader { revision: reader.revision(), ..Default::default() }),
        kvs,
        more,
        count,
    })
}

fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    // Keys come in ascending key order; any other target without an order sorts ascending, as etcd does.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    let compare = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| compare(b, a)),
        _ => kvs.sort_by(compare),
    }
}
