//! Recording clients and watchers.
//!
//! Each client works on a few shared keys: puts of unique values, linearizable gets, compare-and-set
//! transactions (on the value it last saw) and deletes, against one member at a time, moving to the next
//! member when its member fails it. Every operation is recorded with its call and return times from one
//! clock; a write whose answer never came (timeout, broken connection, any error after it was sent) is
//! recorded as of unknown outcome, since it may still be applied. A failed read changed nothing and is
//! left out.
//!
//! Watchers watch the keys' prefix from revision 1 on different members; when a stream breaks, they
//! resume from the revision after the last event they received, as etcd's clients do.

use keel_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_api::etcdserverpb::kv_client::KvClient;
use keel_api::etcdserverpb::request_op::Request as Op;
use keel_api::etcdserverpb::watch_client::WatchClient;
use keel_api::etcdserverpb::watch_request::RequestUnion;
use keel_api::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use keel_check::{Event, KvInput, KvOperation, KvOutput, Operation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub const PREFIX: &str = "chaos/";
/// How long one request may take before its outcome counts as unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The shared clock and the history.
pub struct Recorder {
    started: Instant,
    pub history: Mutex<Vec<KvOperation>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder { started: Instant::now(), history: Mutex::new(Vec::new()) })
    }

    pub fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn record(&self, operation: KvOperation) {
        self.history.lock().expect("history lock").push(operation);
    }
}

pub fn key(index: usize) -> Vec<u8> {
    format!("{PREFIX}k{index}").into_bytes()
}

/// A connection to a member, or None within about two seconds.
pub async fn connect(url: &str) -> Option<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    tokio::time::timeout(Duration::from_secs(2), endpoint.connect()).await.ok()?.ok()
}

/// One client, until `stop`. Returns how many operations it recorded.
pub async fn client(
    id: u64,
    urls: Vec<String>,
    keys: usize,
    seed: u64,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut member = id as usize % urls.len();
    let mut last_seen: Vec<Option<Vec<u8>>> = vec![None; keys];
    let mut count = 0u64;
    let mut kv: Option<KvClient<Channel>> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(client) = kv.as_mut() else {
            match connect(&urls[member]).await {
                Some(channel) => kv = Some(KvClient::new(channel)),
                None => {
                    member = (member + 1) % urls.len();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        let slot = rng.random_range(0..keys);
        let key = key(slot);
        let value = format!("c{id}-{count}").into_bytes();
        let choice = rng.random_range(0..100);
        let input = match choice {
            0..40 => KvInput::Put { key: key.clone(), value: value.clone() },
            40..70 => KvInput::Get { key: key.clone() },
            70..90 => KvInput::Cas { key: key.clone(), expected: last_seen[slot].clone(), new: value.clone() },
            _ => KvInput::Delete { key: key.clone() },
        };
        let call_time = recorder.now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, execute(client, &input)).await;
        let return_time = recorder.now();
        count += 1;
        match result {
            Ok(Ok(output)) => {
                if let KvOutput::Get { value, .. } = &output {
                    last_seen[slot] = value.clone();
                }
                if let (KvInput::Cas { new, .. }, KvOutput::Cas { succeeded: true, .. }) = (&input, &output) {
                    last_seen[slot] = Some(new.clone());
                }
                recorder.record(Operation::completed(id, input, output, call_time, return_time));
            }
            failed => {
                if !matches!(input, KvInput::Get { .. }) {
                    recorder.record(KvOperation::unknown(id, input, call_time));
                }
                // A timeout or an error: try the next member with a fresh connection.
                if failed.is_err() || matches!(failed, Ok(Err(_))) {
                    kv = None;
                    member = (member + 1) % urls.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    count
}

async fn execute(kv: &mut KvClient<Channel>, input: &KvInput) -> Result<KvOutput, tonic::Status> {
    Ok(match input {
        KvInput::Get { key } => {
            let response = kv.range(RangeRequest { key: key.clone(), ..Default::default() }).await?.into_inner();
            match response.kvs.first() {
                Some(found) => {
                    KvOutput::Get { value: Some(found.value.clone()), mod_revision: Some(found.mod_revision) }
                }
                None => KvOutput::Get { value: None, mod_revision: None },
            }
        }
        KvInput::Put { key, value } => {
            let response =
                kv.put(PutRequest { key: key.clone(), value: value.clone(), ..Default::default() }).await?.into_inner();
            KvOutput::Put { revision: response.header.map(|header| header.revision) }
        }
        KvInput::Delete { key } => {
            let response =
                kv.delete_range(DeleteRangeRequest { key: key.clone(), ..Default::default() }).await?.into_inner();
            let revision = response.header.map(|header| header.revision);
            KvOutput::Delete { deleted: response.deleted as u64, revision }
        }
        KvInput::Cas { key, expected, new } => {
            let compare = match expected {
                Some(value) => Compare {
                    key: key.clone(),
                    target: CompareTarget::Value as i32,
                    result: CompareResult::Equal as i32,
                    target_union: Some(TargetUnion::Value(value.clone())),
                    ..Default::default()
                },
                None => Compare {
                    key: key.clone(),
                    target: CompareTarget::Create as i32,
                    result: CompareResult::Equal as i32,
                    target_union: Some(TargetUnion::CreateRevision(0)),
                    ..Default::default()
                },
            };
            let put = RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: key.clone(),
                    value: new.clone(),
                    ..Default::default()
                })),
            };
            let request = TxnRequest { compare: vec![compare], success: vec![put], failure: vec![] };
            let response = kv.txn(request).await?.into_inner();
            KvOutput::Cas { succeeded: response.succeeded, revision: response.header.map(|header| header.revision) }
        }
    })
}

/// What one watcher received.
pub struct Watcher {
    pub name: String,
    pub events: Mutex<Vec<Event>>,
    pub last_revision: AtomicI64,
    pub reconnects: AtomicI64,
}

/// One watcher on member `first` (then the next ones), from revision 1, until `stop`.
pub async fn watcher(watcher: Arc<Watcher>, urls: Vec<String>, first: usize, stop: Arc<AtomicBool>) {
    let mut member = first;
    while !stop.load(Ordering::Relaxed) {
        let next = watcher.last_revision.load(Ordering::Relaxed) + 1;
        if let Some(channel) = connect(&urls[member]).await {
            let _ = follow(&watcher, channel, next, &stop).await;
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        watcher.reconnects.fetch_add(1, Ordering::Relaxed);
        member = (member + 1) % urls.len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn follow(watcher: &Watcher, channel: Channel, from: i64, stop: &AtomicBool) -> Result<(), tonic::Status> {
    let (requests, outgoing) = tokio::sync::mpsc::channel(1);
    let create = WatchCreateRequest {
        key: PREFIX.as_bytes().to_vec(),
        range_end: prefix_end(PREFIX.as_bytes()),
        start_revision: from,
        ..Default::default()
    };
    // Queued before the call: the stream opens with its first message.
    requests.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.expect("queue");
    let mut stream =
        WatchClient::new(channel).watch(tokio_stream::wrappers::ReceiverStream::new(outgoing)).await?.into_inner();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Wake up now and then to see whether to stop; a member that stopped answering is left.
        let message = match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(message) => message?,
            Err(_) => continue,
        };
        let Some(response) = message else { return Ok(()) };
        if response.canceled {
            return Err(tonic::Status::aborted(format!("watch canceled: {}", response.cancel_reason)));
        }
        let mut events = watcher.events.lock().expect("events lock");
        for event in response.events {
            let Some(kv) = event.kv else { continue };
            let recorded = if event.r#type == 1 {
                Event::delete(kv.mod_revision, kv.key)
            } else {
                Event::put(kv.mod_revision, kv.key, kv.value)
            };
            watcher.last_revision.store(recorded.revision, Ordering::Relaxed);
            events.push(recorded);
        }
    }
}

fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    *end.last_mut().expect("a non-empty prefix") += 1;
    end
}
