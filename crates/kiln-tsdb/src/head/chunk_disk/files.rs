//! The chunk files: opening, repairing, mapping and the mutable state around them.

use super::*;

pub(super) struct State {
    /// Every file, the active one included, by sequence.
    pub(super) files: BTreeMap<u64, FileEntry>,
    /// The file being appended to. `None` after open and after truncation finished it:
    /// the next write starts a new file (a file from an earlier run is never appended
    /// to, as in Prometheus).
    pub(super) active: Option<Active>,
    /// Sequence of the next file to create.
    pub(super) next_seq: u64,
}

pub(super) struct FileEntry {
    pub(super) path: PathBuf,
    /// Bytes from the start of the file that hold the header and whole, valid records.
    /// For the active file this lags behind: its `Active::flushed` is authoritative.
    pub(super) readable_len: usize,
    /// Size of the file on disk (Prometheus's files may be zero-padded past the data).
    pub(super) disk_len: u64,
    /// Largest maxt of the file's chunks; `i64::MIN` for a file without chunks.
    pub(super) maxt: i64,
    /// CRC32-C of the first `readable_len` bytes (header and records), so that a head
    /// snapshot can check the whole file in one pass instead of record by record.
    pub(super) crc: u32,
    /// Mapping of at least the first `readable_len` bytes, made on demand.
    pub(super) map: Option<Arc<Mmap>>,
}

pub(super) struct Active {
    pub(super) seq: u64,
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// Bytes written to the file (all of them whole records after the header).
    pub(super) flushed: usize,
    /// Records not yet written: they belong at `flushed..flushed + buf.len()`.
    pub(super) buf: Vec<u8>,
    pub(super) maxt: i64,
    /// CRC32-C of the bytes up to `flushed`.
    pub(super) crc: u32,
    /// A failed write may have left bytes past `flushed`; trim them when finishing.
    pub(super) dirty_tail: bool,
}

impl Active {
    pub(super) fn size(&self) -> usize {
        self.flushed + self.buf.len()
    }

    pub(super) fn has_chunks(&self) -> bool {
        self.size() > HEADER_SIZE
    }

    /// Writes the buffer at `flushed`. A positioned write makes a retry after a failure
    /// overwrite the same bytes instead of appending after a partial write.
    pub(super) fn flush(&mut self, buffer_size: usize) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all_at(&self.buf, self.flushed as u64) {
            self.dirty_tail = true;
            return Err(HeadChunksError::io("write", &self.path)(e));
        }
        self.flushed += self.buf.len();
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        self.buf.clear();
        if self.buf.capacity() > buffer_size.saturating_mul(2) {
            self.buf.shrink_to(buffer_size);
        }
        Ok(())
    }

    /// Writes everything out, trims leftovers of failed writes and fsyncs.
    pub(super) fn finish(&mut self, buffer_size: usize) -> Result<()> {
        self.flush(buffer_size)?;
        if self.dirty_tail {
            // Only bytes past `flushed` go, and no mapping reaches past `flushed`.
            self.file
                .set_len(self.flushed as u64)
                .map_err(HeadChunksError::io("truncate", &self.path))?;
            self.dirty_tail = false;
        }
        self.file
            .sync_all()
            .map_err(HeadChunksError::io("fsync", &self.path))
    }
}

pub(super) enum Located {
    Ready(ChunkBytes),
    NeedsMap,
}

impl State {
    /// Bytes of file `seq` that are on disk and hold whole records.
    pub(super) fn readable_len(&self, seq: u64, entry: &FileEntry) -> usize {
        match &self.active {
            Some(a) if a.seq == seq => a.flushed,
            _ => entry.readable_len,
        }
    }

    pub(super) fn locate(&self, dir: &Path, chunk_ref: u64) -> Result<Located> {
        let (seq, offset) = unpack_ref(chunk_ref);
        let Some(entry) = self.files.get(&seq) else {
            return Err(HeadChunksError::RefNotFound {
                chunk_ref,
                path: dir.join(file_name(seq)),
            });
        };
        let bad_ref = |problem| HeadChunksError::BadRef {
            chunk_ref,
            path: entry.path.clone(),
            offset,
            problem,
        };
        // Offsets are 32 bits, so this never truncates.
        let off = offset as usize;
        if off < HEADER_SIZE {
            return Err(bad_ref(Corruption::Truncated {
                need: HEADER_SIZE as u64,
                available: offset,
            }));
        }
        if let Some(a) = &self.active
            && a.seq == seq
            && off >= a.flushed
        {
            let rel = off - a.flushed;
            let rec = read_header(&a.buf, rel).map_err(|p| bad_ref(shift(p, a.flushed)))?;
            let data = a.buf.get(rec.data).unwrap_or_default();
            return Ok(Located::Ready(ChunkBytes(Repr::Owned(Arc::from(data)))));
        }
        let readable = self.readable_len(seq, entry);
        if off >= readable {
            return Err(bad_ref(Corruption::Truncated {
                need: offset + 1,
                available: readable as u64,
            }));
        }
        match &entry.map {
            Some(map) if map.len() >= readable => {
                let buf = map.get(..readable).unwrap_or_default();
                let rec = read_header(buf, off).map_err(bad_ref)?;
                Ok(Located::Ready(ChunkBytes(Repr::Mapped {
                    map: Arc::clone(map),
                    range: rec.data,
                })))
            }
            _ => Ok(Located::NeedsMap),
        }
    }

    /// Makes sure file `seq` has a mapping covering its readable bytes and returns it.
    pub(super) fn ensure_mapped(
        &mut self,
        seq: u64,
    ) -> Result<Option<(Arc<Mmap>, usize, PathBuf)>> {
        let readable = match self.files.get(&seq) {
            Some(entry) => self.readable_len(seq, entry),
            None => return Ok(None),
        };
        let Some(entry) = self.files.get_mut(&seq) else {
            return Ok(None);
        };
        let map = match &entry.map {
            Some(map) if map.len() >= readable => Arc::clone(map),
            _ => {
                let file =
                    File::open(&entry.path).map_err(HeadChunksError::io("open", &entry.path))?;
                let map = Arc::new(
                    map_file(&file, readable).map_err(HeadChunksError::io("mmap", &entry.path))?,
                );
                entry.map = Some(Arc::clone(&map));
                map
            }
        };
        Ok(Some((map, readable, entry.path.clone())))
    }

    /// Finishes the active file (write, fsync) and records its final state.
    pub(super) fn finish_active(&mut self, buffer_size: usize) -> Result<()> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        active.finish(buffer_size)?;
        if let Some(entry) = self.files.get_mut(&active.seq) {
            entry.readable_len = active.flushed;
            entry.disk_len = active.flushed as u64;
            entry.maxt = active.maxt;
            entry.crc = active.crc;
        }
        self.active = None;
        Ok(())
    }

    /// Finishes the active file and starts the next one.
    pub(super) fn cut(&mut self, dir: &Path, buffer_size: usize) -> Result<&mut Active> {
        self.finish_active(buffer_size)?;
        let seq = self.next_seq;
        let path = dir.join(file_name(seq));
        if seq > u64::from(u32::MAX) {
            return Err(HeadChunksError::SequenceOverflow { path, seq });
        }
        let file = create_file(dir, &path, seq)?;
        self.files.insert(
            seq,
            FileEntry {
                path: path.clone(),
                readable_len: HEADER_SIZE,
                disk_len: HEADER_SIZE as u64,
                maxt: i64::MIN,
                crc: crc32c::crc32c(&file_header()),
                map: None,
            },
        );
        self.next_seq = seq + 1;
        let active = Active {
            seq,
            path,
            file,
            flushed: HEADER_SIZE,
            buf: Vec::with_capacity(buffer_size.min(64 << 10)),
            maxt: i64::MIN,
            crc: crc32c::crc32c(&file_header()),
            dirty_tail: false,
        };
        Ok(self.active.insert(active))
    }
}

/// Creates file `seq` holding just the header: written under `<name>.tmp` and renamed, so
/// the numbered name never shows a partial header; the directory is fsynced.
pub(super) fn create_file(dir: &Path, path: &Path, seq: u64) -> Result<File> {
    let tmp = dir.join(format!("{}.tmp", file_name(seq)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(HeadChunksError::io("create", &tmp))?;
        file.write_all(&file_header())
            .map_err(HeadChunksError::io("write", &tmp))?;
        fs::rename(&tmp, path).map_err(HeadChunksError::io("rename", &tmp))?;
        sync_dir(dir)?;
        Ok(file)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(super) fn file_header() -> [u8; HEADER_SIZE] {
    let m = MAGIC.to_be_bytes();
    [m[0], m[1], m[2], m[3], FORMAT_V1, 0, 0, 0]
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(HeadChunksError::io("fsync directory", dir))
}

/// Maps the first `len` bytes of `file` read-only. The one `unsafe` call of this module.
#[allow(unsafe_code)]
pub(super) fn map_file(file: &File, len: usize) -> io::Result<Mmap> {
    // SAFETY: `MmapOptions::map` is unsafe because the mapping aliases the file; reading
    // it is sound as long as nobody shrinks the file below the mapped length or rewrites
    // the mapped bytes while the mapping lives. Callers map only bytes already written
    // (`len` <= what is on disk). While a ChunkDiskMapper has a directory open, its files
    // are only appended to, past every mapping; `open` truncates a torn file before
    // mapping it again, and finishing a file trims only bytes past its written length.
    // Files are deleted by unlinking, which leaves existing mappings (held by readers'
    // `ChunkBytes`) valid on Unix. Other processes must not modify `chunks_head/` while
    // Kiln has it open, the same contract Prometheus has.
    unsafe { MmapOptions::new().len(len).map(file) }
}

/// Lists the numbered files of `dir`, sorted by sequence. Other names (`*.tmp`, anything
/// not all digits) are ignored.
pub(super) fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(HeadChunksError::io("read directory", dir))? {
        let entry = entry.map_err(HeadChunksError::io("read directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = entry.path();
        let Ok(seq) = name.parse::<u64>() else {
            return Err(HeadChunksError::SequenceOverflow {
                path,
                seq: u64::MAX,
            });
        };
        out.push((seq, path));
    }
    out.sort();
    Ok(out)
}

/// Where and how a file was found damaged, and how many of its bytes open dropped.
#[derive(Debug, Clone)]
pub(super) struct Damage {
    pub(super) path: PathBuf,
    /// Where the bad header or record starts; the file keeps the bytes before it (none
    /// when the header is bad: the file is removed).
    pub(super) offset: u64,
    pub(super) problem: Corruption,
    pub(super) dropped_bytes: u64,
}

/// What opening one file found.
pub(super) struct Checked {
    /// `None` when the file was removed: no usable header.
    pub(super) entry: Option<FileEntry>,
    /// The damage that made open drop part or all of the file.
    pub(super) damage: Option<Damage>,
    /// Whether bytes past the last whole record were cut off the newest file. Kiln never
    /// writes such bytes (Prometheus pre-allocates files with zeros), so after a Kiln run
    /// they are what is left of a torn record whose first bytes happened to be zeros:
    /// the caller counts the file as possibly missing a chunk.
    pub(super) trimmed: bool,
}

/// Opens one existing file and checks its header and every record. A damaged file keeps
/// the whole records before the damage (it is truncated there) or, with a bad header,
/// is removed; the caller drops every later file too, so each series keeps an unbroken
/// run of its oldest chunks (see [`ChunkDiskMapper::open_with_options`]). The last
/// file's zero padding (Prometheus pre-allocates) is trimmed; an older file keeps it.
/// A last file too short for a header is a file cut just before a crash: removed, and
/// not counted as damage (it held no chunk).
pub(super) fn open_existing(path: &Path, is_last: bool) -> Result<Checked> {
    let file = File::open(path).map_err(HeadChunksError::io("open", path))?;
    let disk_len = file
        .metadata()
        .map_err(HeadChunksError::io("stat", path))?
        .len();
    let damage = |offset: usize, problem| Damage {
        path: path.to_path_buf(),
        offset: offset as u64,
        problem,
        dropped_bytes: disk_len.saturating_sub(offset as u64),
    };
    let remove = |damage: Option<Damage>| -> Result<Checked> {
        fs::remove_file(path).map_err(HeadChunksError::io("remove", path))?;
        Ok(Checked {
            entry: None,
            damage,
            trimmed: false,
        })
    };
    let short = disk_len < HEADER_SIZE as u64;
    let map = match usize::try_from(disk_len) {
        _ if disk_len == 0 => None,
        Ok(len) => Some(map_file(&file, len).map_err(HeadChunksError::io("mmap", path))?),
        Err(_) => {
            drop(file);
            return remove(Some(damage(0, Corruption::OffsetOverflow)));
        }
    };
    let bytes: &[u8] = map.as_deref().unwrap_or_default();
    let magic = be_u32(bytes, 0);
    let header_problem = if short {
        Some(Corruption::Truncated {
            need: HEADER_SIZE as u64,
            available: disk_len,
        })
    } else if magic != MAGIC {
        Some(Corruption::BadMagic { found: magic })
    } else {
        let version = bytes.get(4).copied().unwrap_or_default();
        (version != FORMAT_V1).then_some(Corruption::UnsupportedVersion(version))
    };
    if let Some(problem) = header_problem {
        drop(map);
        drop(file);
        if is_last && (short || magic == 0) {
            // Created, but its header never reached the disk.
            tracing::warn!(path = %path.display(), size = disk_len, "removed head chunk file without a header");
            return remove(None);
        }
        return remove(Some(damage(0, problem)));
    }
    let mut off = HEADER_SIZE;
    let mut maxt = i64::MIN;
    let failure = loop {
        match next_record(bytes, off) {
            Ok(None) => break None,
            Ok(Some(rec)) => {
                maxt = maxt.max(rec.maxt);
                off = rec.end;
            }
            Err(problem) => break Some(problem),
        }
    };
    let crc = crc32c::crc32c(&bytes[..off]);
    if failure.is_none() && (!is_last || off as u64 == disk_len) {
        return Ok(Checked {
            entry: Some(FileEntry {
                path: path.to_path_buf(),
                readable_len: off,
                disk_len,
                maxt,
                crc,
                map: map.map(Arc::new),
            }),
            damage: None,
            trimmed: false,
        });
    }
    // Cut the file after its last whole record: drops a torn or damaged record and
    // everything after it, or the newest file's zero padding. The mapping goes before
    // the file shrinks.
    drop(map);
    drop(file);
    let rw = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(HeadChunksError::io("open", path))?;
    rw.set_len(off as u64)
        .map_err(HeadChunksError::io("truncate", path))?;
    rw.sync_all().map_err(HeadChunksError::io("fsync", path))?;
    Ok(Checked {
        entry: Some(FileEntry {
            path: path.to_path_buf(),
            readable_len: off,
            disk_len: off as u64,
            maxt,
            crc,
            map: None,
        }),
        damage: failure.map(|problem| damage(off, problem)),
        trimmed: true,
    })
}
