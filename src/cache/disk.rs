//! The disk tier: one file per URL (its variants together) under `--cache-dir`, written whole
//! to a temporary name and renamed into place by one writer thread (so requests never wait on
//! a write, and a crash leaves either the old file or the new one), found again after a restart
//! by reading each file's head, and checked by its CRC-32 when read: a torn or corrupt file is
//! deleted, never served. An index in memory, weighted by file size and evicted by
//! quick_cache's policy (the same as the memory tier), keeps the tier within `--cache-disk`.

use crate::cache::entry::{self, Key, Variants};
use crate::runtime::log_limit::limited;
use quick_cache::sync::Cache as Index;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Writes queued for the writer thread at most; beyond, a write is skipped (the response is
/// still in memory, and is written again when it is next stored).
const QUEUED_WRITES: usize = 256;
/// Files the index expects to hold, to size itself.
const EXPECTED_FILES: usize = 100_000;

/// What the index knows of one file.
#[derive(Clone)]
pub(crate) struct FileMeta {
    file: Arc<Path>,
    size: u64,
    pub(crate) tags: Arc<[String]>,
    /// When its newest variant arrived (Unix milliseconds), for purges.
    pub(crate) stored_ms: u64,
}

#[derive(Clone)]
struct BySize;

impl Weighter<Key, FileMeta> for BySize {
    fn weight(&self, _key: &Key, meta: &FileMeta) -> u64 {
        meta.size.max(1)
    }
}

/// Deletes the file of an entry the index evicts (on the writer thread, which alone inserts;
/// it takes an entry out before putting its replacement in, since a replacement counts as an
/// eviction of the old one).
#[derive(Clone)]
struct Unlink;

impl Lifecycle<Key, FileMeta> for Unlink {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: Key, meta: FileMeta) {
        let _ = std::fs::remove_file(&meta.file);
    }
}

type FileIndex = Index<Key, FileMeta, BySize, DefaultHashBuilder, Unlink>;

enum Write {
    Put(Key, Variants),
    Remove(Key),
}

/// The disk tier.
pub(crate) struct Disk {
    dir: PathBuf,
    index: Arc<FileIndex>,
    writes: SyncSender<Write>,
    capacity: u64,
}

impl Disk {
    /// Opens the tier in `dir` (created), at most `capacity` bytes, with the files an earlier
    /// run left found again first (before any purge is applied to them, or any write made).
    pub(crate) fn open(dir: &Path, capacity: u64) -> std::io::Result<Disk> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        let index = Arc::new(FileIndex::with(
            EXPECTED_FILES,
            capacity.max(1),
            BySize,
            DefaultHashBuilder::default(),
            Unlink,
        ));
        let (writes, queue) = sync_channel(QUEUED_WRITES);
        let writer = Writer {
            dir: dir.to_owned(),
            index: Arc::clone(&index),
        };
        writer.rescan();
        std::thread::Builder::new()
            .name("porter-cache-disk".into())
            .spawn(move || writer.run(queue))?;
        Ok(Disk {
            dir: dir.to_owned(),
            index,
            writes,
            capacity,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes used, files, capacity.
    pub(crate) fn usage(&self) -> (u64, usize, u64) {
        (self.index.weight(), self.index.len(), self.capacity)
    }

    /// Queues `variants` of `key` to be written; skipped when the writer is behind.
    pub(crate) fn put(&self, key: Key, variants: Variants) {
        if let Err(TrySendError::Full(_)) = self.writes.try_send(Write::Put(key, variants)) {
            limited!(warn, "cache disk writer behind: a write was skipped");
        }
    }

    /// Forgets `key` at once, and queues the removal of its file (after any write of it
    /// queued before).
    pub(crate) fn remove(&self, key: Key) {
        // Queued even when the index lacks it: its write may be queued still.
        self.index.remove(&key);
        self.queue(Write::Remove(key));
    }

    /// Removes every file whose key or tags `gone` selects.
    pub(crate) fn remove_where(&self, gone: impl Fn(&Key, &FileMeta) -> bool) {
        let keys: Vec<Key> = self
            .index
            .iter()
            .filter(|(k, m)| gone(k, m))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.remove(key);
        }
    }

    /// Queues a removal without ever blocking the caller (an edge thread): when the queue is
    /// full, a blocking task waits for room.
    fn queue(&self, write: Write) {
        if let Err(TrySendError::Full(write)) = self.writes.try_send(write) {
            let writes = self.writes.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || writes.send(write))),
                Err(_) => drop(writes.send(write)),
            }
        }
    }

    /// `key`'s variants from its file, checked; a bad file is deleted.
    pub(crate) async fn read(&self, key: &Key) -> Option<Variants> {
        let meta = self.index.get(key)?;
        let file = Arc::clone(&meta.file);
        let read = tokio::task::spawn_blocking(move || std::fs::read(&file)).await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            _ => {
                self.index.remove(key);
                return None;
            }
        };
        match entry::decode(&bytes) {
            Ok((found, variants)) if &found == key => Some(variants),
            Ok(_) => None,
            Err(why) => {
                limited!(warn, "cache file dropped", file = %meta.file.display(), why = %why);
                self.remove(key.clone());
                None
            }
        }
    }
}

/// The one thread that writes, renames and deletes the tier's files.
struct Writer {
    dir: PathBuf,
    index: Arc<FileIndex>,
}

impl Writer {
    fn run(self, queue: Receiver<Write>) {
        let mut n: u64 = 0;
        while let Ok(write) = queue.recv() {
            match write {
                Write::Put(key, variants) => {
                    n += 1;
                    if let Err(e) = self.put(&key, &variants, n) {
                        limited!(warn, "cache file not written", error = %e);
                    }
                }
                Write::Remove(key) => {
                    self.index.remove(&key);
                    let _ = std::fs::remove_file(self.path_of(&key));
                }
            }
        }
    }

    /// Writes to a temporary file, then renames it over the entry's name: readers see the old
    /// file or the new one, never half of one.
    fn put(&self, key: &Key, variants: &Variants, n: u64) -> std::io::Result<()> {
        let bytes = entry::encode(key, variants);
        let file: Arc<Path> = self.path_of(key).into();
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{n}.{}", std::process::id()));
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(&bytes)?;
        drop(out);
        std::fs::rename(&tmp, &file)?;
        let tags: Vec<String> = variants.tags().map(str::to_owned).collect();
        let meta = FileMeta {
            file,
            size: bytes.len() as u64,
            tags: tags.into(),
            stored_ms: variants.stored_ms(),
        };
        // Out first: the index would take a replacement for an eviction of the old entry,
        // whose file (the same name) it deletes.
        self.index.remove(key);
        self.index.insert(key.clone(), meta);
        Ok(())
    }

    fn path_of(&self, key: &Key) -> PathBuf {
        let hash = |salt: u8| {
            let mut h = std::hash::DefaultHasher::new();
            salt.hash(&mut h);
            key.hash(&mut h);
            h.finish()
        };
        let name = format!("{:016x}{:016x}", hash(0), hash(1));
        self.dir.join(&name[..2]).join(name)
    }

    /// Finds the files left by an earlier run: each file's head names its key; files that do
    /// not read are deleted, as are temporary files a crash left.
    fn rescan(&self) {
        // Temporary files are a crash's leftovers (one process writes here: `serve` refuses a
        // second one on its data dir, and a takeover's successor opens the tier after).
        let _ = std::fs::remove_dir_all(self.dir.join("tmp"));
        let _ = std::fs::create_dir_all(self.dir.join("tmp"));
        let Ok(shards) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut found = 0usize;
        for shard in shards.flatten() {
            let path = shard.path();
            if !path.is_dir() || shard.file_name() == "tmp" {
                continue;
            }
            for file in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let path = file.path();
                match read_meta(&path) {
                    Some((key, tags, size, stored_ms)) => {
                        found += 1;
                        let meta = FileMeta {
                            file: path.into(),
                            size,
                            tags: tags.into(),
                            stored_ms,
                        };
                        self.index.insert(key, meta);
                    }
                    None => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        if found > 0 {
            tracing::info!(files = found, dir = %self.dir.display(), "cache files found again");
        }
    }
}

/// A file's key, tags, size and newest arrival from its head.
fn read_meta(path: &Path) -> Option<(Key, Vec<String>, u64, u64)> {
    let mut file = std::fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let mut first = [0u8; 8];
    file.read_exact(&mut first).ok()?;
    let len = entry::meta_len(&first).ok()?;
    if len as u64 > size {
        return None;
    }
    let mut head = first.to_vec();
    head.resize(len, 0);
    file.read_exact(&mut head[8..]).ok()?;
    let (meta, _) = entry::meta_of(&head).ok()?;
    let stored_ms = meta.variants.iter().map(|v| v.times.response_ms).max()?;
    let tags = meta.variants.into_iter().flat_map(|v| v.tags).collect();
    Some((meta.key, tags, size, stored_ms))
}
