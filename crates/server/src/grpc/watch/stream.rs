//! One Watch stream: its watchers, live delivery from the hub, catch-up from the store, progress
//! notifications, cancellation. One task per stream; nothing here is shared with other streams.

use crate::member::Shared;
use crate::watch::{EventBatch, WatchHub, event};
use keel_api::EtcdError;
use keel_api::etcdserverpb::watch_create_request::FilterType;
use keel_api::etcdserverpb::watch_request::RequestUnion;
use keel_api::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse};
use keel_api::mvccpb::Event;
use keel_api::mvccpb::event::EventType;
use keel_state::mvcc::{KeySpan, ReadView, Reader};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

/// Revisions read from the store per catch-up response (etcd's `watchBatchMaxRevs`).
const CATCH_UP_REVISIONS: usize = 1000;
/// etcd's watch id for responses that speak for every watcher of a stream.
const ALL_WATCHERS: i64 = -1;

type Responses = mpsc::Sender<Result<WatchResponse, Status>>;

/// The client went away: stop the stream.
struct Gone;

struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The first revision this watcher has not seen yet.
    next_revision: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// Whether events went out since the last progress tick (which then needs no notification).
    sent_since_tick: bool,
}

impl Watcher {
    fn wants(&self, event: &Event) -> bool {
        let Some(kv) = &event.kv else { return false };
        if kv.mod_revision < self.next_revision || !KeySpan::new(&self.key, &self.range_end).contains(&kv.key) {
            return false;
        }
        match EventType::try_from(event.r#type) {
            Ok(EventType::Put) => !self.no_put,
            Ok(EventType::Delete) => !self.no_delete,
            Err(_) => false,
        }
    }
}

struct WatchStream {
    shared: Arc<Shared>,
    responses: Responses,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    /// Every event up to this revision has been handled for every watcher.
    horizon: i64,
    max_response_bytes: usize,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let metrics = crate::metrics::get();
        metrics.watch_streams.dec();
        metrics.watchers.dec_by(self.watchers.len() as i64);
    }
}

/// Serves one Watch stream until the client closes it.
pub async fn run(
    shared: Arc<Shared>,
    hub: Arc<WatchHub>,
    mut requests: Streaming<WatchRequest>,
    responses: Responses,
    progress_interval: Duration,
    max_response_bytes: usize,
) {
    // Subscribe before reading the store's revision: whatever is applied later reaches the feed.
    let mut feed = hub.subscribe();
    let horizon = match shared.read_view() {
        Ok(view) => view.revision(),
        Err(status) => {
            let _ = responses.send(Err(status)).await;
            return;
        }
    };
    let mut stream =
        WatchStream { shared, responses, watchers: BTreeMap::new(), next_id: 0, horizon, max_response_bytes };
    crate::metrics::get().watch_streams.inc();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + progress_interval, progress_interval);
    // As etcd, a client that half-closes its side still gets events until it goes away.
    let mut requests_open = true;
    loop {
        let outcome = tokio::select! {
            request = requests.message(), if requests_open => match request {
                Ok(Some(request)) => stream.handle(request, &mut feed).await,
                Ok(None) => {
                    requests_open = false;
                    Ok(())
                }
                Err(_) => Err(Gone),
            },
            () = stream.responses.closed() => Err(Gone),
            batch = feed.recv() => match batch {
                Ok(batch) => stream.deliver(&batch).await,
                Err(RecvError::Lagged(_)) => stream.catch_up_all().await,
                Err(RecvError::Closed) => Err(Gone),
            },
            _ = ticker.tick() => stream.progress_tick().await,
        };
        if outcome.is_err() {
            return;
        }
    }
}

impl WatchStream {
    fn header(&self, revision: i64) -> Option<ResponseHeader> {
        self.shared.header(Some(ResponseHeader { revision, ..Default::default() }))
    }

    fn store_revision(&self) -> i64 {
        self.shared.read_view().map(|view| view.revision()).unwrap_or(self.horizon)
    }

    async fn send(&self, response: WatchResponse) -> Result<(), Gone> {
        self.responses.send(Ok(response)).await.map_err(|_| Gone)
    }

    async fn handle(
        &mut self,
        request: WatchRequest,
        feed: &mut tokio::sync::broadcast::Receiver<Arc<EventBatch>>,
    ) -> Result<(), Gone> {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                if self.watchers.remove(&cancel.watch_id).is_some() {
                    crate::metrics::get().watchers.dec();
                    let response = WatchResponse {
                        header: self.header(self.store_revision()),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    self.send(response).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Bring every watcher up to date first, so the revision announced was really delivered.
                loop {
                    match feed.try_recv() {
                        Ok(batch) => self.deliver(&batch).await?,
                        Err(TryRecvError::Lagged(_)) => self.catch_up_all().await?,
                        Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    }
                }
                // The revision every watcher of the stream has been brought up to.
                let revision =
                    self.watchers.values().map(|watcher| watcher.next_revision - 1).fold(self.horizon, i64::min);
                let response =
                    WatchResponse { header: self.header(revision), watch_id: ALL_WATCHERS, ..Default::default() };
                self.send(response).await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, create: WatchCreateRequest) -> Result<(), Gone> {
        let current = self.store_revision();
        let refuse = |reason: String| WatchResponse {
            header: self.header(current),
            watch_id: ALL_WATCHERS,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        };
        let key = if create.key.is_empty() { vec![0] } else { create.key.clone() };
        if create.start_revision < 0 {
            return self.send(refuse(EtcdError::Compacted.message().to_string())).await;
        }
        if !create.range_end.is_empty() && create.range_end != [0] && key >= create.range_end {
            return self.send(refuse("mvcc: watcher range is empty".into())).await;
        }
        let id = if create.watch_id != 0 {
            if self.watchers.contains_key(&create.watch_id) {
                return self.send(refuse("mvcc: duplicate watch ID provided on the WatchStream".into())).await;
            }
            create.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        };
        let filters = |filter: FilterType| create.filters.contains(&(filter as i32));
        let watcher = Watcher {
            key,
            range_end: create.range_end.clone(),
            next_revision: if create.start_revision == 0 { current + 1 } else { create.start_revision },
            no_put: filters(FilterType::Noput),
            no_delete: filters(FilterType::Nodelete),
            prev_kv: create.prev_kv,
            fragment: create.fragment,
            progress_notify: create.progress_notify,
            sent_since_tick: false,
        };
        let catch_up = watcher.next_revision <= current;
        self.watchers.insert(id, watcher);
        crate::metrics::get().watchers.inc();
        let created = WatchResponse { header: self.header(current), watch_id: id, created: true, ..Default::default() };
        self.send(created).await?;
        if catch_up { self.catch_up(id).await } else { Ok(()) }
    }

    /// Live delivery of one applied batch.
    async fn deliver(&mut self, batch: &EventBatch) -> Result<(), Gone> {
        if batch.events.is_empty() {
            // The store was replaced: whatever it gained comes from its history.
            if batch.revision > self.horizon {
                self.catch_up_all().await?;
            }
            return Ok(());
        }
        let first =
            batch.events.first().and_then(|event| event.kv.as_ref()).map_or(batch.revision, |kv| kv.mod_revision);
        if first > self.horizon + 1 {
            // Revisions went by that this stream never saw: take them from the store first.
            self.catch_up_all().await?;
        }
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(watcher) = self.watchers.get_mut(&id) else { continue };
            if watcher.next_revision > batch.revision {
                continue;
            }
            let events: Vec<Event> = batch.events.iter().filter(|event| watcher.wants(event)).cloned().collect();
            watcher.next_revision = batch.revision + 1;
            if !events.is_empty() {
                self.send_events(id, batch.revision, events).await?;
            }
        }
        self.horizon = self.horizon.max(batch.revision);
        Ok(())
    }

    /// Brings every watcher that is behind up to the store's current revision.
    async fn catch_up_all(&mut self) -> Result<(), Gone> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            self.catch_up(id).await?;
        }
        self.horizon = self.horizon.max(self.store_revision());
        Ok(())
    }

    /// Sends a watcher its missed events from the store's history, a chunk at a time.
    async fn catch_up(&mut self, id: i64) -> Result<(), Gone> {
        loop {
            let Ok(view) = self.shared.read_view() else { return Ok(()) };
            let current = view.revision();
            let Some(watcher) = self.watchers.get(&id) else { return Ok(()) };
            if watcher.next_revision > current {
                return Ok(());
            }
            if watcher.next_revision < view.compact_revision() {
                // etcd: the watcher is told the compact revision and cancelled.
                self.watchers.remove(&id);
                crate::metrics::get().watchers.dec();
                let response = WatchResponse {
                    header: self.header(0),
                    watch_id: id,
                    canceled: true,
                    compact_revision: view.compact_revision(),
                    ..Default::default()
                };
                return self.send(response).await;
            }
            let Ok(changes) = view.history(watcher.next_revision, current, CATCH_UP_REVISIONS) else { return Ok(()) };
            let reached = changes.last().map(change_revision).unwrap_or(current);
            let done = changes.is_empty() || reached >= current;
            let events: Vec<Event> = changes.into_iter().map(event).filter(|event| watcher.wants(event)).collect();
            let next = if done { current + 1 } else { reached + 1 };
            if let Some(watcher) = self.watchers.get_mut(&id) {
                watcher.next_revision = next;
            }
            if !events.is_empty() {
                self.send_events(id, current, events).await?;
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn send_events(&mut self, id: i64, revision: i64, mut events: Vec<Event>) -> Result<(), Gone> {
        let Some(watcher) = self.watchers.get_mut(&id) else { return Ok(()) };
        watcher.sent_since_tick = true;
        let fragment = watcher.fragment;
        if watcher.prev_kv
            && let Ok(view) = self.shared.read_view()
        {
            add_previous_values(&view, &mut events);
        }
        let response = WatchResponse { header: self.header(revision), watch_id: id, events, ..Default::default() };
        if !fragment || response.encoded_len() < self.max_response_bytes || response.events.len() < 2 {
            return self.send(response).await;
        }
        // etcd's fragmenting: cut before the event that would take a piece over the limit.
        let mut pieces: Vec<WatchResponse> = Vec::new();
        let template = WatchResponse { events: Vec::new(), fragment: true, ..response.clone() };
        let mut piece = template.clone();
        for event in response.events {
            piece.events.push(event);
            if piece.events.len() > 1 && piece.encoded_len() >= self.max_response_bytes {
                let overflow = piece.events.pop().expect("just pushed");
                pieces.push(std::mem::replace(&mut piece, template.clone()));
                piece.events.push(overflow);
            }
        }
        piece.fragment = false;
        pieces.push(piece);
        for piece in pieces {
            self.send(piece).await?;
        }
        Ok(())
    }

    /// The periodic progress notification, for watchers that asked for it and got no events since.
    async fn progress_tick(&mut self) -> Result<(), Gone> {
        let mut due = Vec::new();
        for (id, watcher) in &mut self.watchers {
            if watcher.progress_notify && !watcher.sent_since_tick {
                due.push(*id);
            }
            watcher.sent_since_tick = false;
        }
        for id in due {
            // What this watcher has been brought up to, never more (clients treat it as a bookmark).
            let Some(watcher) = self.watchers.get(&id) else { continue };
            let revision = (watcher.next_revision - 1).min(self.horizon);
            let response = WatchResponse { header: self.header(revision), watch_id: id, ..Default::default() };
            self.send(response).await?;
        }
        Ok(())
    }
}

fn change_revision(change: &keel_state::mvcc::Change) -> i64 {
    match change {
        keel_state::mvcc::Change::Put(kv) | keel_state::mvcc::Change::Delete(kv) => kv.mod_revision,
    }
}

/// etcd sets `prev_kv` from the store as of the revision before each event (not for creations).
fn add_previous_values(view: &ReadView, events: &mut [Event]) {
    for event in events {
        let Some(kv) = &event.kv else { continue };
        let creation = event.r#type == EventType::Put as i32 && kv.create_revision == kv.mod_revision;
        let before = kv.mod_revision - 1;
        if creation || before < view.compact_revision() {
            continue;
        }
        if let Ok(Some(previous)) = view.get(&kv.key, before) {
            event.prev_kv = Some(previous);
        }
    }
}
