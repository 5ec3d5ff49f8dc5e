//! Requests to object storage, each run on the store's own runtime and counted, and the
//! blocking `Read` over a streamed body.

use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStoreExt, PutMode, PutPayload};

use super::{Inner, PAGE, READ_AHEAD, SESSIONS_DIR};
use crate::values::{Digest, Error, Result};

#[derive(Default)]
pub(super) struct Counters {
    pub(super) put: AtomicU64,
    pub(super) get: AtomicU64,
    pub(super) head: AtomicU64,
    pub(super) list: AtomicU64,
    pub(super) delete: AtomicU64,
    pub(super) bulk_delete: AtomicU64,
    pub(super) multipart_create: AtomicU64,
    pub(super) multipart_part: AtomicU64,
    pub(super) multipart_complete: AtomicU64,
    pub(super) multipart_abort: AtomicU64,
    pub(super) copy: AtomicU64,
}

pub(super) fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// An object storage failure at `key`.
pub(super) fn failed(key: &Key, e: object_store::Error) -> Error {
    Error::Io {
        path: PathBuf::from(key.as_ref()),
        source: std::io::Error::other(e),
    }
}

pub(super) fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl Inner {
    pub(super) fn key(&self, relative: &str) -> Key {
        relative.split('/').fold(self.prefix.clone(), Key::join)
    }

    pub(super) fn blob_key(&self, digest: &Digest) -> Key {
        self.prefix
            .clone()
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    pub(super) fn data_key(&self, id: &str) -> Key {
        self.prefix.clone().join("uploads").join(id).join("data")
    }

    /// The key relative to the prefix, as entries report it.
    pub(super) fn relative(&self, key: &Key) -> Option<Vec<String>> {
        Some(
            key.prefix_match(&self.prefix)?
                .map(|p| p.as_ref().to_owned())
                .collect(),
        )
    }

    pub(super) fn dir(&self) -> Result<PathBuf> {
        let dir = self
            .dir
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        dir.ok_or_else(|| Error::Io {
            path: PathBuf::from(SESSIONS_DIR),
            source: std::io::Error::other("the object store was not opened"),
        })
    }

    pub(super) fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is taken only when dropped")
    }

    /// Runs `future` on the store's runtime and waits for it: from a plain thread or from
    /// inside another runtime alike (where `block_on` would panic).
    pub(super) fn run<T: Send + 'static>(
        &self,
        key: &Key,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv().map_err(|_| Error::Io {
            path: PathBuf::from(key.as_ref()),
            source: std::io::Error::other("the object store's runtime stopped"),
        })
    }

    pub(super) fn head(&self, key: &Key) -> Result<Option<object_store::ObjectMeta>> {
        count(&self.counts.head);
        let (store, k) = (self.store.clone(), key.clone());
        match self.run(key, async move { store.head(&k).await })? {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed(key, e)),
        }
    }

    /// A conditional PUT; `false` if the object was there already.
    pub(super) fn put_new(&self, key: &Key, bytes: Bytes) -> Result<bool> {
        count(&self.counts.put);
        let (store, k) = (self.store.clone(), key.clone());
        let put = async move {
            store
                .put_opts(&k, PutPayload::from(bytes), PutMode::Create.into())
                .await
        };
        match self.run(key, put)? {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(failed(key, e)),
        }
    }

    /// A DELETE; an object already gone is no error.
    pub(super) fn delete(&self, key: &Key) -> Result<()> {
        count(&self.counts.delete);
        let (store, k) = (self.store.clone(), key.clone());
        match self.run(key, async move { store.delete(&k).await })? {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(failed(key, e)),
        }
    }

    /// A GET of `range` (all of it if `None`), its body streamed; `None` if not found.
    pub(super) fn get(
        self: &Arc<Self>,
        key: &Key,
        range: Option<GetRange>,
    ) -> Result<Option<Box<dyn Read + Send>>> {
        count(&self.counts.get);
        let (store, k) = (self.store.clone(), key.clone());
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        let result = match self.run(key, async move { store.get_opts(&k, options).await })? {
            Ok(result) => result,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(failed(key, e)),
        };
        Ok(Some(Box::new(self.stream_reader(result.into_stream()))))
    }

    /// A `Read` over `stream`, which a task of the runtime feeds through a bounded channel:
    /// the task waits (without blocking a thread) while the reader is behind, and ends when
    /// the reader is dropped. The reader keeps the store, whose runtime runs the task.
    fn stream_reader(
        self: &Arc<Self>,
        mut stream: futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
    ) -> StreamReader {
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
        let wake = Arc::new(tokio::sync::Notify::new());
        let woken = wake.clone();
        self.runtime().spawn(async move {
            loop {
                let mut message = match stream.next().await {
                    Some(Ok(bytes)) if bytes.is_empty() => continue,
                    Some(Ok(bytes)) => Chunk::Data(bytes),
                    Some(Err(e)) => Chunk::Failed(std::io::Error::other(e)),
                    None => Chunk::End,
                };
                let last = !matches!(message, Chunk::Data(_));
                loop {
                    match tx.try_send(message) {
                        Ok(()) => break,
                        Err(std::sync::mpsc::TrySendError::Full(m)) => {
                            message = m;
                            woken.notified().await;
                        }
                        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
                    }
                }
                if last {
                    return;
                }
            }
        });
        StreamReader {
            rx,
            wake,
            _store: self.clone(),
            current: Bytes::new(),
            done: false,
        }
    }

    /// Every object under `relative` (a listing), `PAGE` at a time.
    pub(super) fn list(
        &self,
        relative: &str,
        visit: &mut dyn FnMut(Vec<object_store::ObjectMeta>) -> Result<()>,
    ) -> Result<()> {
        count(&self.counts.list);
        let key = self.key(relative);
        // Fused: a page that ends the listing is followed by one more poll.
        let mut stream = self.store.list(Some(&key)).fuse();
        loop {
            let (rest, page) = self.run(&key, async move {
                let page: Vec<_> = stream.by_ref().take(PAGE).collect().await;
                (stream, page)
            })?;
            stream = rest;
            if page.is_empty() {
                return Ok(());
            }
            let page = page
                .into_iter()
                .collect::<object_store::Result<Vec<_>>>()
                .map_err(|e| failed(&key, e))?;
            visit(page)?;
        }
    }

    /// Removes `keys` with one bulk delete; keys already gone are no error.
    pub(super) fn delete_keys(&self, keys: Vec<Key>) -> Result<()> {
        let Some(first) = keys.first().cloned() else {
            return Ok(());
        };
        count(&self.counts.bulk_delete);
        let store = self.store.clone();
        let results = self.run(&first, async move {
            let keys = futures_util::stream::iter(keys.into_iter().map(Ok)).boxed();
            store.delete_stream(keys).collect::<Vec<_>>().await
        })?;
        for result in results {
            match result {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(failed(&first, e)),
            }
        }
        Ok(())
    }

    pub(super) fn create_multipart(&self, key: &Key) -> Result<String> {
        count(&self.counts.multipart_create);
        let (store, k) = (self.multipart.clone(), key.clone());
        self.run(key, async move { store.create_multipart(&k).await })?
            .map_err(|e| failed(key, e))
    }

    pub(super) fn put_part(
        &self,
        key: &Key,
        upload: &str,
        index: usize,
        bytes: Bytes,
    ) -> Result<String> {
        count(&self.counts.multipart_part);
        let (store, k, id) = (self.multipart.clone(), key.clone(), upload.to_owned());
        let sent = async move {
            store
                .put_part(&k, &id, index, PutPayload::from(bytes))
                .await
        };
        Ok(self.run(key, sent)?.map_err(|e| failed(key, e))?.content_id)
    }

    pub(super) fn complete_multipart(
        &self,
        key: &Key,
        upload: &str,
        parts: Vec<String>,
    ) -> Result<()> {
        count(&self.counts.multipart_complete);
        let (store, k, id) = (self.multipart.clone(), key.clone(), upload.to_owned());
        let parts = parts
            .into_iter()
            .map(|content_id| object_store::multipart::PartId { content_id })
            .collect();
        self.run(key, async move {
            store.complete_multipart(&k, &id, parts).await
        })?
        .map(drop)
        .map_err(|e| failed(key, e))
    }

    /// Aborts a multipart upload; one already gone (completed, aborted, expired) is no error,
    /// nor is any failure: an upload left behind costs storage until a lifecycle rule, not
    /// correctness.
    pub(super) fn abort_multipart(&self, key: &Key, upload: &str) {
        count(&self.counts.multipart_abort);
        let (store, k, id) = (self.multipart.clone(), key.clone(), upload.to_owned());
        let _ = self.run(key, async move { store.abort_multipart(&k, &id).await });
    }

    pub(super) fn copy(
        &self,
        from: &Key,
        to: &Key,
    ) -> std::result::Result<(), object_store::Error> {
        count(&self.counts.copy);
        let (store, f, t) = (self.store.clone(), from.clone(), to.clone());
        match self.run(to, async move { store.copy(&f, &t).await }) {
            Ok(result) => result,
            Err(e) => Err(object_store::Error::Generic {
                store: "ocistore",
                source: Box::new(e),
            }),
        }
    }
}

/// What the task feeding a [`StreamReader`] sends.
enum Chunk {
    Data(Bytes),
    End,
    Failed(std::io::Error),
}

/// The body of a GET, as a blocking `Read`.
struct StreamReader {
    rx: std::sync::mpsc::Receiver<Chunk>,
    wake: Arc<tokio::sync::Notify>,
    current: Bytes,
    done: bool,
    /// The runtime the body comes through lives as long as the reader.
    _store: Arc<Inner>,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            let received = self.rx.recv();
            self.wake.notify_one();
            match received {
                Ok(Chunk::Data(bytes)) => self.current = bytes,
                Ok(Chunk::End) => self.done = true,
                Ok(Chunk::Failed(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(std::io::Error::other(
                        "the object store's runtime stopped during a read",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        // The feeding task may wait for room: wake it to find the channel closed.
        self.wake.notify_one();
    }
}
