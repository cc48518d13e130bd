//! The watch hub: the applier publishes each applied batch's changes here, and every watch stream
//! follows them.
//!
//! Publishing never blocks the applier: batches go into a bounded broadcast ring. A stream that falls
//! behind the ring (its client reads slowly) loses its place and catches up from the store's history
//! instead, a chunk at a time, so a slow client costs the store some reads, never unbounded memory, and
//! never stalls writers or other watchers (etcd's synced / unsynced watcher groups).

use keel_api::mvccpb::event::EventType;
use keel_api::mvccpb::{Event, KeyValue};
use keel_state::mvcc::Change;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Batches kept for streams that are momentarily behind.
const RING_BATCHES: usize = 1024;

/// The events of one applied batch, in revision order; `revision` is the store revision after it.
#[derive(Debug)]
pub struct EventBatch {
    pub revision: i64,
    pub events: Vec<Event>,
}

pub struct WatchHub {
    sender: broadcast::Sender<Arc<EventBatch>>,
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub { sender: broadcast::channel(RING_BATCHES).0 }
    }
}

impl WatchHub {
    /// Publishes applied changes; returns at once whatever the watchers are doing.
    pub fn publish(&self, changes: Vec<Change>) {
        if changes.is_empty() || self.sender.receiver_count() == 0 {
            return;
        }
        let events: Vec<Event> = changes.into_iter().map(event).collect();
        let revision = events.last().and_then(|event| event.kv.as_ref()).map_or(0, |kv| kv.mod_revision);
        let _ = self.sender.send(Arc::new(EventBatch { revision, events }));
    }

    /// The store was replaced wholesale (a Raft snapshot) and now stands at `revision`: an empty batch
    /// tells every stream to catch up from the store.
    pub fn restored(&self, revision: i64) {
        let _ = self.sender.send(Arc::new(EventBatch { revision, events: Vec::new() }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventBatch>> {
        self.sender.subscribe()
    }
}

/// A store change as a watch event.
pub fn event(change: Change) -> Event {
    let (kind, kv): (EventType, KeyValue) = match change {
        Change::Put(kv) => (EventType::Put, kv),
        Change::Delete(kv) => (EventType::Delete, kv),
    };
    Event { r#type: kind as i32, kv: Some(kv), prev_kv: None }
}
