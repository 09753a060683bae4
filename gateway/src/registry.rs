//! `StreamRegistry`: the running streams — for each, its definition, its [`Hub`], its ingest task and, when it
//! records, its recorder (`dvr`) with the catalog follower.
//!
//! Every change is persisted before it takes effect, so what runs is what comes back after a restart. A patch that
//! changes inputs, credentials or timings stops the old ingest and starts a new one on the *same* hub: viewers stay
//! attached and see the slate, then the new input.
//!
//! Locking: the map and each stream's live state sit behind `parking_lot` mutexes that are only held for a few
//! assignments, never across an `.await` (take what is needed out, drop the guard, then await). Two management
//! calls on the same stream never interleave: each marks the stream busy, and a second call meanwhile gets
//! [`RegistryError::Busy`] (409) instead of waiting.
//!
//! Cancellation: `create`, `patch` and `delete` run as their own tokio task and the caller awaits its handle, so a
//! client that disconnects mid-call (hyper then drops the handler's future) cannot cut a change half-way — leave a
//! stream whose old ingest was stopped and new one never started, or a deleted stream whose hub stays open. The
//! change finishes; only its answer is lost.
//!
//! Deleting a stream deletes its recordings (files, catalog rows, cached exports): a stream created later with the
//! same id starts with none (`purge.rs`, decision 0008).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_models::{CreateStream, PatchStream, StreamView};
use dvr::recorder::{RecorderHandle, RecorderOptions};
use dvr::retention::StreamLimits;
use dvr::segmenter::SegmenterOptions;
use hub::{Hub, HubOptions};
use parking_lot::Mutex;
use sources::IngestHandle;
use tracing::{info, warn};

use crate::catalog::{self, RecordingStatus};
use crate::definition::{DefinitionError, StreamDefinition};
use crate::retention::RetentionTrigger;
use crate::store::{Store, StoreError};
use crate::view::stream_view;

/// How long shutdown waits for one ingest to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// MP4 fragment length while a segment is written. mp4mux writes a fragment's index one fragment late, so a crash
/// loses about two of these: a second.
const FRAGMENT_MS: u32 = 500;

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Invalid(#[from] DefinitionError),
    #[error("stream {0:?} not found")]
    NotFound(String),
    #[error("stream {0:?} exists already")]
    Exists(String),
    #[error("stream {0:?} is being changed by another request; try again")]
    Busy(String),
    #[error("this gateway is configured for at most {0} streams")]
    TooManyStreams(usize),
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(anyhow::Error),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists(id) => RegistryError::Exists(id),
            StoreError::Missing(id) => RegistryError::NotFound(id),
            StoreError::Other(e) => RegistryError::Store(e),
        }
    }
}

/// Settings shared by every stream.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    pub max_streams: usize,
    /// Reconnect an input that delivers no frame for this long.
    pub watchdog: Duration,
    /// Largest RTP payload the hubs produce.
    pub mtu: usize,
    /// New viewers start from the cached GOP (off only to measure what a server without one gives).
    pub gop_cache: bool,
    /// Recordings go under `<recordings_dir>/<source_id>/`.
    pub recordings_dir: PathBuf,
    /// Exports are cached under `<exports_dir>/<source_id>/`.
    pub exports_dir: PathBuf,
    pub segmenter: SegmenterOptions,
    /// Woken when a segment is finished.
    pub retention: RetentionTrigger,
}

/// One registered stream.
struct Entry {
    hub: Hub,
    live: Mutex<Live>,
    recording: Arc<Mutex<RecordingStatus>>,
    /// Set while a management call works on this stream.
    busy: AtomicBool,
}

struct Live {
    def: Arc<StreamDefinition>,
    ingest: Option<IngestHandle>,
    recorder: Option<Recording>,
}

/// A running recorder and the task writing its reports into the catalog.
struct Recording {
    recorder: RecorderHandle,
    catalog: tokio::task::JoinHandle<()>,
}

impl Recording {
    /// Returns once the open segment is finalized *and* its row says so, so a caller that stopped recording reads
    /// a catalog with nothing left `writing`.
    async fn stop(self) {
        self.recorder.stop().await;
        // The recorder dropped its event sender, so the follower drains what is left and ends.
        let _ = self.catalog.await;
    }
}

impl Entry {
    fn definition(&self) -> Arc<StreamDefinition> {
        self.live.lock().def.clone()
    }

    fn view(&self) -> StreamView {
        let recording = self.recording.lock().clone();
        stream_view(&self.definition(), &self.hub, &recording)
    }

    /// Marks the stream busy until the returned guard drops.
    fn try_busy(&self) -> Result<BusyGuard<'_>, RegistryError> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(RegistryError::Busy(self.definition().source_id.clone()));
        }
        Ok(BusyGuard(&self.busy))
    }
}

/// Clears an [`Entry`]'s busy flag on drop. A flag, not a lock: nobody ever waits on it.
struct BusyGuard<'a>(&'a AtomicBool);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The running streams of the gateway.
pub struct StreamRegistry {
    store: Store,
    options: RegistryOptions,
    streams: Mutex<BTreeMap<String, Arc<Entry>>>,
    closing: AtomicBool,
}

impl StreamRegistry {
    pub fn new(store: Store, options: RegistryOptions) -> StreamRegistry {
        StreamRegistry {
            store,
            options,
            streams: Mutex::new(BTreeMap::new()),
            closing: AtomicBool::new(false),
        }
    }

    /// Starts every stream found in the store. Returns how many.
    pub async fn restore(&self) -> anyhow::Result<usize> {
        let defs = self.store.list().await?;
        let n = defs.len();
        if n > self.options.max_streams {
            warn!(
                stored = n,
                max_streams = self.options.max_streams,
                "more streams stored than allowed; starting all"
            );
        }
        for def in defs {
            let entry = self.new_entry(def.clone());
            let replaced = self
                .streams
                .lock()
                .insert(def.source_id.clone(), entry.clone());
            if let Some(old) = replaced {
                warn!(source_id = %def.source_id, "restored twice; replacing");
                old.hub.close();
            }
            self.start_ingest(&entry, &def);
            self.start_recorder(&entry, &def);
            info!(source_id = %def.source_id, inputs = %describe_inputs(&def), "restored stream");
        }
        Ok(n)
    }

    /// Registers, persists and starts a stream. Runs to the end even if the caller's future is dropped.
    pub async fn create(self: &Arc<Self>, req: CreateStream) -> Result<StreamView, RegistryError> {
        let this = self.clone();
        run_detached(async move { this.create_now(req).await }).await
    }

    /// Changes a stream; restarts its ingest (on the same hub) when inputs, credentials or timings change. Runs to
    /// the end even if the caller's future is dropped.
    pub async fn patch(
        self: &Arc<Self>,
        id: &str,
        patch: PatchStream,
    ) -> Result<StreamView, RegistryError> {
        let (this, id) = (self.clone(), id.to_owned());
        run_detached(async move { this.patch_now(&id, patch).await }).await
    }

    /// Stops a stream, closes its hub (viewers are told the stream ended), deletes its recordings and forgets it.
    /// Runs to the end even if the caller's future is dropped.
    pub async fn delete(self: &Arc<Self>, id: &str) -> Result<(), RegistryError> {
        let (this, id) = (self.clone(), id.to_owned());
        run_detached(async move { this.delete_now(&id).await }).await
    }

    async fn create_now(&self, req: CreateStream) -> Result<StreamView, RegistryError> {
        self.check_open()?;
        let def = StreamDefinition::from_create(req, now_ms())?;
        let id = def.source_id.clone();
        let entry = self.new_entry(def.clone());
        let busy = entry.try_busy()?;
        {
            let mut map = self.streams.lock();
            if map.contains_key(&id) {
                return Err(RegistryError::Exists(id));
            }
            if map.len() >= self.options.max_streams {
                return Err(RegistryError::TooManyStreams(self.options.max_streams));
            }
            map.insert(id.clone(), entry.clone());
        }
        if let Err(e) = self.store.insert(def.clone()).await {
            self.remove_if_same(&id, &entry);
            entry.hub.close();
            return Err(e.into());
        }
        // Whatever an earlier stream of this id left (a delete cut short by a crash) is not this stream's.
        if let Err(e) = crate::purge::recordings(&self.store, &self.purge_dirs(), &id).await {
            warn!(source_id = %id, error = format!("{e:#}"), "recordings of an earlier stream with this id not removed");
        }
        if self.check_open().is_ok() {
            self.start_ingest(&entry, &def);
            self.start_recorder(&entry, &def);
        }
        drop(busy);
        info!(source_id = %id, inputs = %describe_inputs(&def), credentials = def.credentials.is_some(), "created stream");
        Ok(entry.view())
    }

    async fn patch_now(&self, id: &str, patch: PatchStream) -> Result<StreamView, RegistryError> {
        self.check_open()?;
        let entry = self.entry(id)?;
        let busy = entry.try_busy()?;
        let current = entry.definition();
        let next = current.patched(patch)?;
        self.store.update(next.clone()).await?;
        let restart = !next.same_ingest(&current);
        let old = {
            let mut live = entry.live.lock();
            live.def = Arc::new(next.clone());
            if restart {
                live.ingest.take()
            } else {
                None
            }
        };
        if restart {
            if let Some(old) = old {
                old.stop().await;
            }
            if self.check_open().is_ok() {
                self.start_ingest(&entry, &next);
            }
        }
        if next.should_record && self.check_open().is_ok() {
            self.start_recorder(&entry, &next);
        } else if !next.should_record {
            stop_recorder(&entry).await;
        }
        drop(busy);
        info!(source_id = %id, inputs = %describe_inputs(&next), credentials = next.credentials.is_some(),
            restarted = restart, "patched stream");
        Ok(entry.view())
    }

    async fn delete_now(&self, id: &str) -> Result<(), RegistryError> {
        self.check_open()?;
        let entry = self.entry(id)?;
        let busy = entry.try_busy()?;
        match self.store.delete(id).await {
            Ok(()) | Err(StoreError::Missing(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let ingest = entry.live.lock().ingest.take();
        if let Some(ingest) = ingest {
            ingest.stop().await;
        }
        stop_recorder(&entry).await;
        entry.hub.close();
        // After the recorder stopped, so no file is written into the directory being removed.
        if let Err(e) = crate::purge::recordings(&self.store, &self.purge_dirs(), id).await {
            warn!(source_id = %id, error = format!("{e:#}"), "recordings of the deleted stream not all removed; \
                the next start removes the rest");
        }
        // Last, so a create of the same id meanwhile gets 409 instead of recording into the directory being
        // removed.
        self.remove_if_same(id, &entry);
        drop(busy);
        info!(source_id = %id, "deleted stream");
        Ok(())
    }

    /// One stream's view.
    pub fn get(&self, id: &str) -> Result<StreamView, RegistryError> {
        Ok(self.entry(id)?.view())
    }

    /// Every stream's view, by id.
    pub fn list(&self) -> Vec<StreamView> {
        let entries: Vec<Arc<Entry>> = self.streams.lock().values().cloned().collect();
        entries.iter().map(|e| e.view()).collect()
    }

    /// Each stream's retention limits, for the retention planner.
    pub fn retention_limits(&self) -> HashMap<String, StreamLimits> {
        let entries: Vec<Arc<Entry>> = self.streams.lock().values().cloned().collect();
        entries
            .iter()
            .map(|e| {
                let def = e.definition();
                let r = def.retention;
                (
                    def.source_id.clone(),
                    StreamLimits {
                        max_age_ms: r.max_age_secs.map(|s| s as i64 * 1000),
                        max_bytes: r.max_bytes,
                    },
                )
            })
            .collect()
    }

    /// After segments of a stream were deleted (retention, by hand): its recording status from what is left.
    pub async fn refresh_recorded_totals(&self, id: &str) -> Result<(), StoreError> {
        let (bytes, oldest, _) = self.store.recorded_totals(id).await?;
        if let Some(e) = self.streams.lock().get(id).cloned() {
            let mut s = e.recording.lock();
            s.bytes = bytes;
            s.oldest_ms = oldest;
        }
        Ok(())
    }

    /// The database (the recordings catalog reads it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The hub of a stream, for consumers (publishers, recorder).
    pub fn hub(&self, id: &str) -> Option<Hub> {
        self.streams.lock().get(id).map(|e| e.hub.clone())
    }

    /// Number of registered streams.
    pub fn len(&self) -> usize {
        self.streams.lock().len()
    }

    /// True when no stream is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses further changes, stops every ingest and closes every hub.
    pub async fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        let entries: Vec<Arc<Entry>> = std::mem::take(&mut *self.streams.lock())
            .into_values()
            .collect();
        let stops = entries.iter().map(|entry| {
            let ingest = entry.live.lock().ingest.take();
            async move {
                if let Some(ingest) = ingest {
                    if tokio::time::timeout(STOP_TIMEOUT, ingest.stop()).await.is_err() {
                        warn!(source_id = %entry.definition().source_id, "ingest did not stop in time");
                    }
                }
                // Finalizes the segment being written, so a clean stop leaves only normal MP4 files.
                stop_recorder(entry).await;
                entry.hub.close();
            }
        });
        futures::future::join_all(stops).await;
        info!(streams = entries.len(), "all streams stopped");
    }

    /// True once shutdown has begun.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn purge_dirs(&self) -> crate::purge::Dirs {
        crate::purge::Dirs {
            recordings: self.options.recordings_dir.clone(),
            exports: self.options.exports_dir.clone(),
        }
    }

    fn check_open(&self) -> Result<(), RegistryError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(RegistryError::ShuttingDown);
        }
        Ok(())
    }

    fn entry(&self, id: &str) -> Result<Arc<Entry>, RegistryError> {
        self.streams
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))
    }

    fn new_entry(&self, def: StreamDefinition) -> Arc<Entry> {
        let d = HubOptions::default();
        let options = HubOptions {
            mtu: self.options.mtu,
            gop_max_frames: if self.options.gop_cache {
                d.gop_max_frames
            } else {
                0
            },
            ..d
        };
        Arc::new(Entry {
            hub: Hub::new(def.source_id.clone(), options),
            live: Mutex::new(Live {
                def: Arc::new(def),
                ingest: None,
                recorder: None,
            }),
            recording: Arc::new(Mutex::new(RecordingStatus::default())),
            busy: AtomicBool::new(false),
        })
    }

    /// Spawns the ingest of `def` into the entry's hub (the entry must have none running).
    fn start_ingest(&self, entry: &Entry, def: &StreamDefinition) {
        let handle = IngestHandle::spawn(
            def.source_id.clone(),
            def.ingest_options(self.options.watchdog),
            Arc::new(entry.hub.clone()),
        );
        let previous = entry.live.lock().ingest.replace(handle);
        debug_assert!(previous.is_none(), "two ingests on one hub");
    }

    /// Starts recording the entry's hub if `def` asks for it and no recorder runs yet.
    fn start_recorder(&self, entry: &Entry, def: &StreamDefinition) {
        if !def.should_record || entry.live.lock().recorder.is_some() {
            return;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let catalog = tokio::spawn(catalog::follow_recorder(
            self.store.clone(),
            def.source_id.clone(),
            rx,
            entry.recording.clone(),
            self.options.retention.clone(),
        ));
        // Stream ids are validated to `[A-Za-z0-9_-]`: safe as a directory name.
        let recorder = RecorderHandle::spawn(
            entry.hub.clone(),
            RecorderOptions {
                dir: self.options.recordings_dir.join(&def.source_id),
                segmenter: self.options.segmenter,
                fragment_ms: FRAGMENT_MS,
                max_queued_bytes: dvr::recorder::DEFAULT_MAX_QUEUED_BYTES,
            },
            tx,
        );
        entry.recording.lock().active = true;
        let recording = Recording { recorder, catalog };
        if let Some(raced) = entry.live.lock().recorder.replace(recording) {
            // Another call started one meanwhile; both record the same hub, so stop the older one.
            tokio::spawn(raced.stop());
        }
    }

    fn remove_if_same(&self, id: &str, entry: &Arc<Entry>) {
        let mut map = self.streams.lock();
        if map.get(id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            map.remove(id);
        }
    }
}

/// Runs a management change as its own task and waits for it: dropping the waiting future leaves the change
/// running to its end. A panic in the change is passed on; a task cancelled by the runtime shutting down is
/// reported as such.
async fn run_detached<T: Send + 'static>(
    change: impl Future<Output = Result<T, RegistryError>> + Send + 'static,
) -> Result<T, RegistryError> {
    match tokio::spawn(change).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(RegistryError::ShuttingDown),
    }
}

/// Stops the entry's recorder, if any, once its open segment is finalized.
async fn stop_recorder(entry: &Entry) {
    let recorder = entry.live.lock().recorder.take();
    if let Some(r) = recorder {
        r.stop().await;
    }
    entry.recording.lock().active = false;
}

/// `label=url(priority)` list for logs; URLs here never carry credentials.
fn describe_inputs(def: &StreamDefinition) -> String {
    def.inputs
        .iter()
        .map(|i| format!("{}={}({})", i.label, i.url, i.priority))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
