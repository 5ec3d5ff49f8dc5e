//! An upload session of [`ObjectStoreBlobs`](super::ObjectStoreBlobs): its state in the store's
//! directory, `object-uploads/<id>/` with
//! - `lock`: the flock of [`BlobStore::lock_upload`](crate::BlobStore::lock_upload);
//! - `tail.<start>`: the session's bytes from offset `<start>`, the end of the last part sent:
//!   fewer than a part;
//! - `multipart`: the multipart upload's id, written before its first part is sent, so that a
//!   cancel can abort it without the mark;
//! - `completed`: written once the multipart upload is complete, so that a retried finish
//!   goes straight to the copy;
//!
//! and its [`Mark`], which the core commits with the session's offset.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::remote::{failed, is_not_found};
use super::{Inner, SESSIONS_DIR};
use crate::blobs::{UploadLock, UploadMark};
use crate::values::{Algorithm, Digest, Error, Hasher, IoContext, Result, hash_reader, verify};

/// What the database keeps of a session that sent parts: the multipart upload, the parts sent
/// and acknowledged (each with the session offset it ends at), and the sha256 and sha512 states
/// of the bytes up to the last one, which nothing can read back.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Mark {
    #[serde(default)]
    pub(super) multipart: String,
    #[serde(default)]
    pub(super) parts: Vec<(u64, String)>,
    #[serde(default)]
    pub(super) sha256: String,
    #[serde(default)]
    pub(super) sha512: String,
}

/// An error about the session at `path`.
fn bad(path: &Path, what: String) -> Error {
    Error::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
    }
}

impl Mark {
    /// The mark the core holds for the session at `path`; none is a session without parts.
    pub(super) fn parse(mark: Option<&UploadMark>, path: &Path) -> Result<Mark> {
        let Some(mark) = mark else {
            return Ok(Mark::default());
        };
        let parsed: Mark = serde_json::from_slice(mark.as_bytes())
            .map_err(|e| bad(path, format!("upload mark not understood: {e}")))?;
        if !parsed.parts.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(bad(path, "upload mark with parts out of order".to_owned()));
        }
        Ok(parsed)
    }

    /// Where the parts sent end: the first offset still on the local disk.
    pub(super) fn sent(&self) -> u64 {
        self.parts.last().map_or(0, |p| p.0)
    }

    /// The sha256 and sha512 hashers of the bytes sent (blake3 keeps no state to save).
    pub(super) fn hashers(&self, path: &Path) -> Result<Vec<Hasher>> {
        let kept = [
            (Algorithm::Sha256, &self.sha256),
            (Algorithm::Sha512, &self.sha512),
        ];
        kept.into_iter()
            .map(|(algorithm, state)| {
                if self.parts.is_empty() {
                    return Ok(algorithm.hasher());
                }
                hex::decode(state)
                    .ok()
                    .and_then(|state| Hasher::from_state(algorithm, &state))
                    .ok_or_else(|| bad(path, format!("upload mark with a bad {algorithm} state")))
            })
            .collect()
    }

    fn to_upload_mark(&self) -> UploadMark {
        UploadMark::new(serde_json::to_vec(self).expect("a mark serializes"))
    }
}

/// Whether `id` can name a session: the core's ids are UUIDs; nothing that could leave the
/// sessions' directory or need escaping in a key.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The ids of the sessions with local state in store directory `dir`.
pub(super) fn local_ids(dir: &Path) -> Result<Vec<String>> {
    let sessions = dir.join(SESSIONS_DIR);
    let mut ids = Vec::new();
    for entry in fs::read_dir(&sessions).at(&sessions)? {
        let entry = entry.at(&sessions)?;
        if let Some(id) = entry.file_name().to_str()
            && valid_id(id)
            && entry.path().is_dir()
        {
            ids.push(id.to_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

/// One session's local directory.
pub(super) struct Session {
    id: String,
    dir: PathBuf,
}

impl Session {
    /// Creates the local state of a new session: its lock and an empty tail.
    pub(super) fn create(store_dir: &Path, id: &str) -> Result<()> {
        let sessions = store_dir.join(SESSIONS_DIR);
        let dir = sessions.join(id);
        if !valid_id(id) {
            return Err(bad(&dir, format!("{id:?} cannot name an upload session")));
        }
        fs::create_dir(&dir).at(&dir)?;
        for name in ["lock", "tail.0"] {
            let path = dir.join(name);
            File::create_new(&path).at(&path)?;
        }
        sync_dir(&dir)?;
        sync_dir(&sessions)
    }

    /// The session `id`, if it has local state.
    pub(super) fn find(store_dir: &Path, id: &str) -> Result<Option<Session>> {
        if !valid_id(id) {
            return Ok(None);
        }
        let dir = store_dir.join(SESSIONS_DIR).join(id);
        match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => Ok(Some(Session {
                id: id.to_owned(),
                dir,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                path: dir,
                source: e,
            }),
        }
    }

    /// The session `id`, which must have local state.
    pub(super) fn existing(store_dir: &Path, id: &str) -> Result<Session> {
        Session::find(store_dir, id)?.ok_or_else(|| Error::Io {
            path: store_dir.join(SESSIONS_DIR).join(id),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.dir
    }

    fn tail(&self, start: u64) -> PathBuf {
        self.dir.join(format!("tail.{start}"))
    }

    /// The starts of the session's tail files, in order.
    fn tails(&self) -> Result<Vec<u64>> {
        let mut starts = Vec::new();
        for entry in fs::read_dir(&self.dir).at(&self.dir)? {
            let name = entry.at(&self.dir)?.file_name();
            if let Some(start) = name
                .to_str()
                .and_then(|n| n.strip_prefix("tail."))
                .and_then(|n| n.parse().ok())
            {
                starts.push(start);
            }
        }
        starts.sort_unstable();
        Ok(starts)
    }

    /// The multipart upload the session created, if it did.
    pub(super) fn multipart(&self) -> Result<Option<String>> {
        let path = self.dir.join("multipart");
        match fs::read_to_string(&path) {
            Ok(id) => Ok(Some(id)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    fn completed(&self) -> bool {
        self.has_file("completed")
    }

    fn has_file(&self, name: &str) -> bool {
        self.dir.join(name).exists()
    }

    /// Writes a small file whole, by rename, so that no crash leaves it torn.
    pub(super) fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(name);
        write_synced(&tmp, bytes)?;
        fs::rename(&tmp, &path).at(&path)?;
        sync_dir(&self.dir)
    }

    pub(super) fn lock(&self) -> Result<Option<UploadLock>> {
        let path = self.dir.join("lock");
        let file = match File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            opened => opened.at(&path)?,
        };
        // A flock, as the directory store takes: it excludes other handles of this process
        // as it does other processes, and goes with a process that dies holding it.
        file.lock().at(&path)?;
        Ok(Some(UploadLock::new(file)))
    }

    /// Removes the local state. The core may still hold the flock of `lock` inside: the open
    /// file keeps it, and nothing needs the name any more.
    pub(super) fn remove(&self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Error::Io {
                    path: self.dir.clone(),
                    source: e,
                });
            }
        }
        sync_dir(self.dir.parent().unwrap_or(&self.dir))
    }

    /// The session's bytes from `start`, which must be at or past the end of the parts sent.
    pub(super) fn read_from(&self, start: u64) -> Result<Box<dyn Read + Send>> {
        // A tail past the acknowledged offset (a part whose commit never happened) starts past
        // any `start` the core asks for, so the largest start at or before it is the one.
        let Some(&from) = self.tails()?.iter().rev().find(|&&s| s <= start) else {
            return Err(bad(
                &self.dir,
                format!("the bytes before offset {start} were sent to object storage"),
            ));
        };
        let path = self.tail(from);
        let mut file = File::open(&path).at(&path)?;
        file.seek(SeekFrom::Start(start - from)).at(&path)?;
        Ok(Box::new(file))
    }

    /// Opens the tail the mark names, after dropping every other one and cutting it to the
    /// `offset` the core acknowledged; returns it and how many bytes it holds.
    fn acknowledged_tail(&self, mark: &Mark, offset: u64) -> Result<(File, PathBuf, u64)> {
        let sent = mark.sent();
        let path = self.tail(sent);
        if offset < sent {
            return Err(bad(
                &path,
                format!("the offset {offset} is before the end {sent} of the parts sent"),
            ));
        }
        // Tails before `sent` are those of parts since committed; tails after it, of parts
        // sent whose commit never happened: they will be sent again from this one.
        for start in self.tails()? {
            if start != sent {
                let stale = self.tail(start);
                match fs::remove_file(&stale) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::Io {
                            path: stale,
                            source: e,
                        });
                    }
                    _ => {}
                }
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        let held = offset - sent;
        let len = file.metadata().at(&path)?.len();
        if len < held {
            return Err(Error::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the tail holds {len} bytes, the session's offset needs {held}"),
                ),
            });
        }
        if len > held {
            // The torn end of an append that failed part way.
            file.set_len(held).at(&path)?;
        }
        Ok((file, path, held))
    }

    /// Appends `chunk` at `offset`: to the local tail while it stays under a part, else
    /// sending every whole part it makes and starting a new tail with the rest.
    pub(super) fn append(
        &self,
        inner: &Inner,
        part_size: usize,
        offset: u64,
        chunk: &[u8],
        mut mark: Mark,
    ) -> Result<Option<UploadMark>> {
        if self.completed() {
            return Err(bad(
                &self.dir,
                "the session's upload is already complete".to_owned(),
            ));
        }
        let (file, path, held) = self.acknowledged_tail(&mark, offset)?;
        let held_len = usize::try_from(held).unwrap_or(usize::MAX);
        if held_len.saturating_add(chunk.len()) < part_size {
            file.write_all_at(chunk, held).at(&path)?;
            file.sync_data().at(&path)?;
            return Ok(None);
        }
        let mut pending = vec![0; held_len];
        file.read_exact_at(&mut pending, 0).at(&path)?;
        drop(file);
        let mut hashers = mark.hashers(&self.dir)?;
        let data = inner.data_key(&self.id);
        let mut upload = (!mark.parts.is_empty()).then(|| mark.multipart.clone());
        let mut end = mark.sent();
        let mut rest = chunk;
        loop {
            // Filled up to a part from the chunk; a tail already longer (the part size was
            // smaller when it was written) is sent a part at a time.
            if pending.len() < part_size {
                let take = rest.len().min(part_size - pending.len());
                pending.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
            }
            if pending.len() < part_size {
                break;
            }
            let after = pending.split_off(part_size);
            let part = std::mem::replace(&mut pending, after);
            let id = if let Some(id) = &upload {
                id.clone()
            } else {
                // An upload created by an append whose commit failed is used again: a new
                // one would leave it behind, out of a cancel's reach.
                let id = if let Some(id) = self.multipart()? {
                    id
                } else {
                    let id = inner.create_multipart(&data)?;
                    self.write_file("multipart", id.as_bytes())?;
                    id
                };
                upload = Some(id.clone());
                id
            };
            for hasher in &mut hashers {
                hasher.update(&part);
            }
            end += part.len() as u64;
            let content_id = inner.put_part(&data, &id, mark.parts.len(), Bytes::from(part))?;
            mark.parts.push((end, content_id));
        }
        mark.multipart = upload.unwrap_or_default();
        let state = |h: &Hasher| hex::encode(h.state().expect("sha2 states can be saved"));
        (mark.sha256, mark.sha512) = (state(&hashers[0]), state(&hashers[1]));
        // A new file: the old tail stays until a call sees this mark committed, so a failed
        // commit falls back to it.
        let next = self.tail(end);
        write_synced(&next, &pending)?;
        sync_dir(&self.dir)?;
        Ok(Some(mark.to_upload_mark()))
    }

    /// Makes the session's first `len` bytes blob `digest` and removes the session.
    pub(super) fn finish(
        &self,
        inner: &Arc<Inner>,
        digest: &Digest,
        len: u64,
        mark: &Mark,
        verified: bool,
    ) -> Result<()> {
        let blob = inner.blob_key(digest);
        if mark.parts.is_empty() {
            let (file, path, held) = self.acknowledged_tail(mark, len)?;
            let mut bytes = vec![0; usize::try_from(held).unwrap_or(usize::MAX)];
            file.read_exact_at(&mut bytes, 0).at(&path)?;
            if !verified && let Err(e) = verify(digest, digest.algorithm().digest(&bytes)) {
                self.remove()?;
                return Err(e);
            }
            if let Some(upload) = self.multipart()? {
                // Created by an append whose commit failed: nothing of it is needed.
                inner.abort_multipart(&inner.data_key(&self.id), &upload);
            }
            inner.put_new(&blob, Bytes::from(bytes))?;
            return self.remove();
        }
        let data = inner.data_key(&self.id);
        // A finish that completed the upload and died (or lost the answer) before it wrote
        // `completed` left the data whole: completing again would fail (the upload is gone).
        if !self.completed()
            && self.has_file("completing")
            && inner.head(&data)?.is_some_and(|m| m.size == len)
        {
            self.write_file("completed", b"")?;
        }
        if !self.completed() {
            self.write_file("completing", b"")?;
            let (file, path, held) = self.acknowledged_tail(mark, len)?;
            let mut ids: Vec<String> = mark.parts.iter().map(|p| p.1.clone()).collect();
            if held > 0 {
                let mut last = vec![0; usize::try_from(held).unwrap_or(usize::MAX)];
                file.read_exact_at(&mut last, 0).at(&path)?;
                ids.push(inner.put_part(&data, &mark.multipart, ids.len(), Bytes::from(last))?);
            }
            drop(file);
            inner.complete_multipart(&data, &mark.multipart, ids)?;
            self.write_file("completed", b"")?;
        }
        if !verified {
            // The parts sent cannot be read back but as the whole object: hash that. Gone,
            // it cannot be checked against this digest (an earlier finish may have checked
            // it against another): the session ends unfinished.
            let Some(mut reader) = inner.get(&data, None)? else {
                self.remove()?;
                return Err(bad(
                    &self.dir,
                    "the session's joined upload is gone; push the blob again".to_owned(),
                ));
            };
            let (hasher, _) =
                hash_reader(&mut reader, digest.algorithm()).at(PathBuf::from(data.as_ref()))?;
            if let Err(e) = verify(digest, hasher.finish()) {
                inner.delete(&data)?;
                self.remove()?;
                return Err(e);
            }
        }
        match inner.copy(&data, &blob) {
            Ok(()) => {}
            // As above: the blob's size is checked next.
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(failed(&blob, e)),
        }
        let size = inner.head(&blob)?.map(|m| m.size);
        if size != Some(len) {
            return Err(bad(
                Path::new(blob.as_ref()),
                format!("the copied blob holds {size:?} bytes, not {len}"),
            ));
        }
        inner.delete(&data)?;
        self.remove()
    }
}

/// Writes `bytes` to a new file and fsyncs it.
pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).at(path)?;
    f.write_all(bytes).at(path)?;
    f.sync_all().at(path)
}

/// Makes a directory's entries (a new file, a rename) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
