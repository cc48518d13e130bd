//! The MVCC store against a plain in-memory model: random sequences of put, delete, txn, compact and
//! reads at random revisions must give identical results, errors included. The store is also closed and
//! reopened at random points, so what the backend holds (not just memory) is what is checked.

use keel_api::EtcdError;
use keel_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_api::etcdserverpb::request_op::Request as OpRequest;
use keel_api::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use keel_api::keelpb::InternalRequest;
use keel_api::keelpb::internal_request::Request;
use keel_api::mvccpb::KeyValue;
use keel_state::{Entry, Response, StateMachine, mvcc};
use proptest::prelude::*;
use prost::Message;
use std::collections::BTreeMap;

type Snapshot = BTreeMap<Vec<u8>, KeyValue>;

/// Every revision's full key space: the simplest possible MVCC.
struct Model {
    history: Vec<Snapshot>,
    compacted: i64,
}

impl Model {
    fn new() -> Self {
        // Revision 0 does not exist; revision 1 is the empty store.
        Model { history: vec![Snapshot::new(), Snapshot::new()], compacted: -1 }
    }
    fn revision(&self) -> i64 {
        self.history.len() as i64 - 1
    }
    fn current(&self) -> &Snapshot {
        self.history.last().unwrap()
    }
    fn commit(&mut self, next: Snapshot) {
        self.history.push(next);
    }
    fn put(next: &mut Snapshot, revision: i64, key: &[u8], value: &[u8]) {
        let (create_revision, version) = match next.get(key) {
            Some(existing) => (existing.create_revision, existing.version + 1),
            None => (revision, 1),
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: revision,
            version,
            value: value.to_vec(),
            lease: 0,
        };
        next.insert(key.to_vec(), kv);
    }
    fn delete(next: &mut Snapshot, key: &[u8], range_end: &[u8]) -> i64 {
        let doomed: Vec<Vec<u8>> =
            next.keys().filter(|k| mvcc::KeySpan::new(key, range_end).contains(k)).cloned().collect();
        for k in &doomed {
            next.remove(k);
        }
        doomed.len() as i64
    }
    fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        at: i64,
        limit: i64,
    ) -> Result<(Vec<KeyValue>, i64, bool), EtcdError> {
        let at = if at <= 0 { self.revision() } else { at };
        if at > self.revision() {
            return Err(EtcdError::FutureRevision);
        }
        if at < self.compacted {
            return Err(EtcdError::Compacted);
        }
        let span = mvcc::KeySpan::new(key, range_end);
        let all: Vec<KeyValue> =
            self.history[at as usize].values().filter(|kv| span.contains(&kv.key)).cloned().collect();
        let count = all.len() as i64;
        let more = limit > 0 && all.len() > limit as usize;
        let kvs = if limit > 0 { all.into_iter().take(limit as usize).collect() } else { all };
        Ok((kvs, count, more))
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        value: u8,
    },
    Delete {
        key: u8,
        end: Option<u8>,
    },
    /// if version(key) == version then put(put_key) else delete(delete_key)
    Txn {
        key: u8,
        version: i64,
        put_key: u8,
        delete_key: u8,
    },
    Compact {
        back: i64,
    },
    Read {
        key: u8,
        end: Option<u8>,
        back: i64,
        limit: i64,
    },
    Reopen,
}

fn key(k: u8) -> Vec<u8> {
    format!("key/{}", k % 6).into_bytes()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(key, value)| Op::Put { key, value }),
        1 => (any::<u8>(), proptest::option::of(any::<u8>())).prop_map(|(key, end)| Op::Delete { key, end }),
        2 => (any::<u8>(), 0i64..3, any::<u8>(), any::<u8>())
            .prop_map(|(key, version, put_key, delete_key)| Op::Txn { key, version, put_key, delete_key }),
        1 => (-1i64..6).prop_map(|back| Op::Compact { back }),
        4 => (any::<u8>(), proptest::option::of(any::<u8>()), -1i64..8, 0i64..3)
            .prop_map(|(key, end, back, limit)| Op::Read { key, end, back, limit }),
        1 => Just(Op::Reopen),
    ]
}

fn end_key(end: Option<u8>) -> Vec<u8> {
    end.map(key).unwrap_or_default()
}

struct Store {
    dir: tempfile::TempDir,
    machine: StateMachine,
    next_index: u64,
}

impl Store {
    fn apply(&mut self, request: Request) -> Result<Response, EtcdError> {
        self.next_index += 1;
        let data = InternalRequest { id: self.next_index, request: Some(request) }.encode_to_vec();
        let entry = Entry { index: self.next_index, term: 1, data: &data };
        let mut outcome = self.machine.apply(&[entry], self.next_index.is_multiple_of(3)).expect("apply");
        outcome.applied.pop().expect("one outcome").result
    }
    fn reopen(&mut self) {
        self.machine.persist().unwrap();
        let path = self.dir.path().join("db");
        // Drop the old handle before opening the file again.
        self.machine = StateMachine::open(&self.dir.path().join("other")).unwrap();
        self.machine = StateMachine::open(&path).unwrap();
        assert_eq!(self.machine.state().index, self.next_index);
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let machine = StateMachine::open(&dir.path().join("db")).unwrap();
    let mut store = Store { dir, machine, next_index: 0 };
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::Put { key: k, value } => {
                let response = store.apply(Request::Put(PutRequest {
                    key: key(k),
                    value: vec![value],
                    prev_kv: true,
                    ..Default::default()
                }));
                let previous = model.current().get(&key(k)).cloned();
                let mut next = model.current().clone();
                Model::put(&mut next, model.revision() + 1, &key(k), &[value]);
                model.commit(next);
                let Ok(Response::Put(response)) = response else { panic!("put failed: {response:?}") };
                assert_eq!(response.prev_kv, previous);
                assert_eq!(response.header.unwrap().revision, model.revision());
            }
            Op::Delete { key: k, end } => {
                let response = store.apply(Request::DeleteRange(DeleteRangeRequest {
                    key: key(k),
                    range_end: end_key(end),
                    ..Default::default()
                }));
                let mut next = model.current().clone();
                let deleted = Model::delete(&mut next, &key(k), &end_key(end));
                if deleted > 0 {
                    model.commit(next);
                }
                let Ok(Response::DeleteRange(response)) = response else { panic!("delete failed") };
                assert_eq!(response.deleted, deleted);
                assert_eq!(response.header.unwrap().revision, model.revision());
            }
            Op::Txn { key: k, version, put_key, delete_key } => {
                let compare = Compare {
                    key: key(k),
                    target: CompareTarget::Version as i32,
                    result: CompareResult::Equal as i32,
                    target_union: Some(TargetUnion::Version(version)),
                    ..Default::default()
                };
                let put = RequestOp {
                    request: Some(OpRequest::RequestPut(PutRequest {
                        key: key(put_key),
                        value: b"txn".to_vec(),
                        ..Default::default()
                    })),
                };
                let delete = RequestOp {
                    request: Some(OpRequest::RequestDeleteRange(DeleteRangeRequest {
                        key: key(delete_key),
                        ..Default::default()
                    })),
                };
                let response = store.apply(Request::Txn(TxnRequest {
                    compare: vec![compare],
                    success: vec![put],
                    failure: vec![delete],
                }));
                let holds = model.current().get(&key(k)).map_or(0, |kv| kv.version) == version;
                let mut next = model.current().clone();
                let changed = if holds {
                    Model::put(&mut next, model.revision() + 1, &key(put_key), b"txn");
                    true
                } else {
                    Model::delete(&mut next, &key(delete_key), &[]) > 0
                };
                if changed {
                    model.commit(next);
                }
                let Ok(Response::Txn(response)) = response else { panic!("txn failed") };
                assert_eq!(response.succeeded, holds);
                assert_eq!(response.header.unwrap().revision, model.revision());
            }
            Op::Compact { back } => {
                let at = model.revision() - back;
                let response = store.apply(Request::Compaction(CompactionRequest { revision: at, physical: true }));
                let expected = if at <= model.compacted {
                    Err(EtcdError::Compacted)
                } else if at > model.revision() {
                    Err(EtcdError::FutureRevision)
                } else {
                    model.compacted = at;
                    Ok(())
                };
                assert_eq!(response.map(|_| ()), expected);
            }
            Op::Read { key: k, end, back, limit } => {
                let at = if back == 7 { 0 } else { model.revision() - back };
                let request =
                    RangeRequest { key: key(k), range_end: end_key(end), revision: at, limit, ..Default::default() };
                let view = store.machine.read().unwrap();
                let got = mvcc::range(&view, &request).map(|r| (r.kvs, r.count, r.more));
                let got = got.map_err(|error| match error {
                    keel_state::StateError::Request(error) => error,
                    other => panic!("fatal: {other}"),
                });
                assert_eq!(got, model.range(&key(k), &end_key(end), at, limit), "read {request:?}");
            }
            Op::Reopen => store.reopen(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
