//! An external sort of fixed-size byte records, so that sorting a million facts takes a few
//! megabytes of memory instead of a million entries' worth.
//!
//! Records are `[u8; N]` compared as bytes, so callers write numbers big-endian and the
//! byte order is the numeric order. [`Sorter`] keeps at most one chunk of records in
//! memory; each full chunk is sorted and written as a run to one anonymous temporary file
//! (deleted by the operating system when it is closed, even after a crash). [`Sorter::finish`]
//! hands back the records in order: straight from memory when they fitted in one chunk,
//! otherwise through a k-way merge of the runs with a [`BinaryHeap`], reading each run
//! through a small buffer. More runs than `MAX_FAN_IN` (64) are first merged in groups, so the
//! merge's buffers stay bounded whatever the input size.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of records kept in memory before a chunk is sorted and written out.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// Bytes read ahead from each run during the merge.
const RUN_BUFFER_BYTES: usize = 16 << 10;

/// Most runs merged at once; more are first merged in groups of this many.
const MAX_FAN_IN: usize = 64;

/// A run: `len` records from byte `start` of the runs file.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u64,
    len: u64,
}

/// Collects records, then hands them back in byte order.
pub(crate) struct Sorter<const N: usize> {
    chunk: Vec<[u8; N]>,
    chunk_records: usize,
    dir: PathBuf,
    /// The runs written so far, and the file holding them.
    spilled: Option<Spilled>,
    /// With [`Sorter::last_of_each`]: records whose first this-many bytes are equal are one
    /// key, and only the last of them in byte order is kept within each chunk.
    key_bytes: Option<usize>,
}

struct Spilled {
    file: BufWriter<File>,
    runs: Vec<Run>,
    end: u64,
}

impl<const N: usize> Sorter<N> {
    /// A sorter that keeps about [`CHUNK_BYTES`] in memory and spills to `dir`.
    pub(crate) fn new(dir: &Path) -> Self {
        Self::with_chunk_records(dir, (CHUNK_BYTES / N).max(1))
    }

    /// A sorter that spills every `chunk_records` records (tests use tiny chunks).
    pub(crate) fn with_chunk_records(dir: &Path, chunk_records: usize) -> Self {
        Sorter {
            chunk: Vec::new(),
            chunk_records: chunk_records.max(1),
            dir: dir.to_path_buf(),
            spilled: None,
            key_bytes: None,
        }
    }

    /// Keeps, within each chunk, only the last record (in byte order) of those whose first
    /// `key_bytes` bytes are equal: for a caller that reads only the last record of each key,
    /// so the runs written and merged are smaller. The merge may still hand back several
    /// records of one key, from different chunks.
    pub(crate) fn last_of_each(mut self, key_bytes: usize) -> Self {
        self.key_bytes = Some(key_bytes.min(N));
        self
    }

    /// Sorts the chunk, then drops what [`Sorter::last_of_each`] says is not needed.
    fn sort_chunk(&mut self) {
        self.chunk.sort_unstable();
        if let Some(key_bytes) = self.key_bytes {
            // `dedup_by` keeps the first of a run of equal keys: move the later one into it.
            self.chunk.dedup_by(|later, kept| {
                let same = later[..key_bytes] == kept[..key_bytes];
                if same {
                    *kept = *later;
                }
                same
            });
        }
    }

    pub(crate) fn push(&mut self, record: [u8; N]) -> io::Result<()> {
        if self.chunk.capacity() == 0 {
            // Reserved once: pages are only touched as records arrive, and the chunk never
            // grows by doubling (which would briefly hold two copies).
            self.chunk.reserve_exact(self.chunk_records);
        }
        self.chunk.push(record);
        if self.chunk.len() >= self.chunk_records {
            self.spill()?;
        }
        Ok(())
    }

    /// Sorts the chunk in memory and appends it to the runs file as one run.
    fn spill(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.sort_chunk();
        let spilled = match &mut self.spilled {
            Some(spilled) => spilled,
            None => self.spilled.insert(Spilled {
                file: BufWriter::with_capacity(RUN_BUFFER_BYTES, tempfile::tempfile_in(&self.dir)?),
                runs: Vec::new(),
                end: 0,
            }),
        };
        for record in &self.chunk {
            spilled.file.write_all(record)?;
        }
        let len = self.chunk.len() as u64;
        spilled.runs.push(Run {
            start: spilled.end,
            len,
        });
        spilled.end += len * N as u64;
        self.chunk.clear();
        Ok(())
    }

    /// All records pushed, in byte order.
    pub(crate) fn finish(mut self) -> io::Result<Sorted<N>> {
        let Some(_) = &self.spilled else {
            self.sort_chunk();
            return Ok(Sorted::Memory(std::mem::take(&mut self.chunk).into_iter()));
        };
        self.spill()?;
        // The chunk's memory is not needed during the merge.
        self.chunk = Vec::new();
        let Some(spilled) = self.spilled.take() else {
            unreachable!("checked above")
        };
        let mut file = spilled.file.into_inner().map_err(|e| e.into_error())?;
        let mut runs = spilled.runs;
        while runs.len() > MAX_FAN_IN {
            (file, runs) = merge_in_groups::<N>(file, &runs, &self.dir)?;
        }
        Ok(Sorted::Merge(Merge::new(file, &runs)?))
    }
}

/// Merges each group of [`MAX_FAN_IN`] runs into one run of a new file.
fn merge_in_groups<const N: usize>(
    file: File,
    runs: &[Run],
    dir: &Path,
) -> io::Result<(File, Vec<Run>)> {
    let file = std::sync::Arc::new(file);
    let mut out = BufWriter::with_capacity(RUN_BUFFER_BYTES, tempfile::tempfile_in(dir)?);
    let mut merged = Vec::new();
    let mut end = 0u64;
    for group in runs.chunks(MAX_FAN_IN) {
        let mut merge = Merge::<N>::shared(file.clone(), group)?;
        let mut len = 0u64;
        while let Some(record) = merge.next_record()? {
            out.write_all(&record)?;
            len += 1;
        }
        merged.push(Run { start: end, len });
        end += len * N as u64;
    }
    Ok((out.into_inner().map_err(|e| e.into_error())?, merged))
}

/// The records of a [`Sorter`], in byte order.
pub(crate) enum Sorted<const N: usize> {
    Memory(std::vec::IntoIter<[u8; N]>),
    Merge(Merge<N>),
}

impl<const N: usize> Iterator for Sorted<N> {
    type Item = io::Result<[u8; N]>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Sorted::Memory(records) => records.next().map(Ok),
            Sorted::Merge(merge) => merge.next_record().transpose(),
        }
    }
}

/// A k-way merge of sorted runs that share one file.
pub(crate) struct Merge<const N: usize> {
    file: std::sync::Arc<File>,
    readers: Vec<RunReader>,
    /// The next record of each run that has one, smallest first; ties go to the earlier run.
    heap: BinaryHeap<Reverse<([u8; N], usize)>>,
}

impl<const N: usize> Merge<N> {
    fn new(file: File, runs: &[Run]) -> io::Result<Self> {
        Self::shared(std::sync::Arc::new(file), runs)
    }

    fn shared(file: std::sync::Arc<File>, runs: &[Run]) -> io::Result<Self> {
        let mut merge = Merge {
            file,
            readers: runs.iter().map(|run| RunReader::new(*run, N)).collect(),
            heap: BinaryHeap::with_capacity(runs.len()),
        };
        for index in 0..merge.readers.len() {
            merge.refill(index)?;
        }
        Ok(merge)
    }

    /// Pushes run `index`'s next record onto the heap, if it has one.
    fn refill(&mut self, index: usize) -> io::Result<()> {
        if let Some(bytes) = self.readers[index].next(&self.file, N)? {
            let mut record = [0u8; N];
            record.copy_from_slice(bytes);
            self.heap.push(Reverse((record, index)));
        }
        Ok(())
    }

    fn next_record(&mut self) -> io::Result<Option<[u8; N]>> {
        let Some(Reverse((record, index))) = self.heap.pop() else {
            return Ok(None);
        };
        self.refill(index)?;
        Ok(Some(record))
    }
}

/// Reads one run through a small buffer.
struct RunReader {
    /// File offset of the next byte not yet in `buffer`.
    next: u64,
    /// Bytes of the run not yet in `buffer`.
    left: u64,
    buffer: Vec<u8>,
    /// Offset in `buffer` of the next record.
    at: usize,
}

impl RunReader {
    fn new(run: Run, record_len: usize) -> Self {
        RunReader {
            next: run.start,
            left: run.len * record_len as u64,
            buffer: Vec::new(),
            at: 0,
        }
    }

    fn next(&mut self, mut file: &File, record_len: usize) -> io::Result<Option<&[u8]>> {
        if self.at == self.buffer.len() {
            if self.left == 0 {
                self.buffer = Vec::new();
                return Ok(None);
            }
            let records = (RUN_BUFFER_BYTES / record_len).max(1) as u64;
            let size = (records * record_len as u64).min(self.left) as usize;
            self.buffer.resize(size, 0);
            file.seek(SeekFrom::Start(self.next))?;
            file.read_exact(&mut self.buffer)?;
            self.next += size as u64;
            self.left -= size as u64;
            self.at = 0;
        }
        let record = &self.buffer[self.at..self.at + record_len];
        self.at += record_len;
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sort_all(records: &[[u8; 3]], chunk: usize) -> Vec<[u8; 3]> {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = Sorter::with_chunk_records(dir.path(), chunk);
        for record in records {
            sorter.push(*record).unwrap();
        }
        sorter.finish().unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn empty_input_gives_nothing() {
        assert!(sort_all(&[], 2).is_empty());
    }

    #[test]
    fn in_memory_and_spilled_agree() {
        let records: Vec<[u8; 3]> = (0u32..1000)
            .map(|n| {
                let x = n.wrapping_mul(2_654_435_761) >> 8;
                [(x >> 16) as u8, (x >> 8) as u8, x as u8 % 7]
            })
            .collect();
        let mut expected = records.clone();
        expected.sort();
        assert_eq!(sort_all(&records, 10_000), expected, "one chunk, in memory");
        assert_eq!(
            sort_all(&records, 7),
            expected,
            "143 runs, merged in groups first"
        );
        assert_eq!(sort_all(&records, 1), expected, "one record per run");
    }

    proptest! {
        #[test]
        fn last_of_each_keeps_every_keys_last_record_in_order(
            records in proptest::collection::vec(any::<[u8; 3]>(), 0..300),
            chunk in 1usize..20,
        ) {
            // Keys of one byte, so that many records share one.
            let dir = tempfile::tempdir().unwrap();
            let mut sorter = Sorter::with_chunk_records(dir.path(), chunk).last_of_each(1);
            for record in &records {
                sorter.push(*record).unwrap();
            }
            let got: Vec<[u8; 3]> = sorter.finish().unwrap().map(Result::unwrap).collect();
            prop_assert!(got.windows(2).all(|pair| pair[0] <= pair[1]), "in byte order");
            let mut expected = records.clone();
            expected.sort();
            // Of each key, the last record got is the last record of the whole sort.
            let last_of = |all: &[[u8; 3]]| {
                let mut last = std::collections::BTreeMap::new();
                for record in all {
                    last.insert(record[0], *record);
                }
                last
            };
            prop_assert_eq!(last_of(&got), last_of(&expected));
            prop_assert!(got.iter().all(|record| expected.contains(record)));
            // A chunk keeps one record of each key it holds.
            let keys = last_of(&expected).len();
            prop_assert!(got.len() <= records.len().div_ceil(chunk) * keys);
        }

        #[test]
        fn sorts_like_sort(records in proptest::collection::vec(any::<[u8; 3]>(), 0..300), chunk in 1usize..20) {
            let mut expected = records.clone();
            expected.sort();
            prop_assert_eq!(sort_all(&records, chunk), expected);
        }
    }
}
