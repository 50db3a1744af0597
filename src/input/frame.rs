//! Line framing: splits the byte stream into physical lines (any line end, a BOM at the
//! start, a cap of [`MAX_RECORD_BYTES`] per line) and parses one record at a time with
//! `csv_core`, so a stray quote costs one row rather than the rest of the file.

use std::io::BufRead;

use super::MAX_RECORD_BYTES;

/// One physical line, without its line end.
pub(super) enum Physical {
    Text {
        line: u64,
        bytes: Vec<u8>,
    },
    /// Longer than [`MAX_RECORD_BYTES`]; its bytes were skipped, not kept.
    TooLong {
        line: u64,
        bytes: usize,
    },
}

/// Splits a byte stream into physical lines at `\n`, `\r\n` or a bare `\r`, keeping at most
/// [`MAX_RECORD_BYTES`] of any line.
pub(super) struct Lines {
    inner: Box<dyn BufRead + Send>,
    /// Number of the next line to be returned.
    next_line: u64,
    /// The last line ended with `\r`: a `\n` right after it belongs to that line end.
    after_cr: bool,
    /// The next line is the first of the file, where a UTF-8 BOM may sit.
    at_start: bool,
}

impl Lines {
    /// Lines of a stream that starts at line 1, where a BOM may sit.
    pub(super) fn new(inner: Box<dyn BufRead + Send>) -> Self {
        Lines {
            inner,
            next_line: 1,
            after_cr: false,
            at_start: true,
        }
    }

    pub(super) fn next(&mut self) -> std::io::Result<Option<Physical>> {
        let mut bytes = Vec::new();
        let mut length = 0usize;
        let mut any = false;
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            if std::mem::take(&mut self.after_cr) && chunk[0] == b'\n' {
                self.inner.consume(1);
                continue;
            }
            any = true;
            let end = chunk.iter().position(|&b| b == b'\n' || b == b'\r');
            let take = end.unwrap_or(chunk.len());
            if length + take <= MAX_RECORD_BYTES {
                bytes.extend_from_slice(&chunk[..take]);
            }
            length += take;
            match end {
                Some(at) => {
                    self.after_cr = chunk[at] == b'\r';
                    self.inner.consume(at + 1);
                    break;
                }
                None => self.inner.consume(take),
            }
        }
        let line = self.next_line;
        self.next_line += 1;
        if std::mem::take(&mut self.at_start) && bytes.starts_with(b"\xef\xbb\xbf") {
            bytes.drain(..3);
            length -= 3;
        }
        Ok(Some(if length > MAX_RECORD_BYTES {
            Physical::TooLong {
                line,
                bytes: length,
            }
        } else {
            Physical::Text { line, bytes }
        }))
    }
}

/// A record framed and split into fields, or why it could not be.
pub(super) enum Framed {
    Fields {
        line: u64,
        end_line: u64,
        record: csv::ByteRecord,
    },
    TooLong {
        line: u64,
        bytes: usize,
    },
    /// A quoted field opened on this line and did not close; `record` is the line alone.
    OpenQuote {
        line: u64,
        record: csv::ByteRecord,
    },
}

/// Parses framed lines into fields with `csv_core`, joining lines only inside a quoted field.
pub(super) struct Parser {
    pub(super) core: csv_core::Reader,
    delimiter: u8,
    output: Vec<u8>,
    ends: Vec<usize>,
}

/// Drops the spaces between a delimiter and an opening quote (`a, "b, c"`), which hand-edited
/// files often have: `csv_core` only takes a quote as opening at the very start of a field.
pub(super) fn unpad_quotes(line: &[u8], delimiter: u8) -> std::borrow::Cow<'_, [u8]> {
    if !line.contains(&b'"') {
        return std::borrow::Cow::Borrowed(line);
    }
    let is_pad = |b: u8| (b == b' ' || b == b'\t') && b != delimiter;
    let mut out = Vec::with_capacity(line.len());
    let mut in_quotes = false;
    let mut at_field_start = true;
    let mut i = 0;
    while i < line.len() {
        let byte = line[i];
        if at_field_start && !in_quotes && is_pad(byte) {
            let rest = line[i..].iter().position(|&b| !is_pad(b));
            if rest.is_some_and(|n| line[i + n] == b'"') {
                i += rest.unwrap_or(0);
                continue;
            }
        }
        at_field_start = !in_quotes && byte == delimiter;
        if byte == b'"' {
            in_quotes = !in_quotes;
        }
        out.push(byte);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

impl Parser {
    pub(super) fn new(delimiter: u8) -> Self {
        Parser {
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            delimiter,
            output: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Feeds `input` to the record in progress. True when the record ended (at the end of
    /// `input`, or at end of file when `input` is empty); false when a quoted field is open.
    pub(super) fn feed(&mut self, input: &[u8], filled: &mut (usize, usize)) -> bool {
        use csv_core::ReadRecordResult::*;
        // Output never exceeds input, and there are never more fields than bytes plus one.
        let want = filled.0 + input.len() + 1;
        if self.output.len() < want {
            self.output.resize(want, 0);
        }
        if self.ends.len() < filled.1 + input.len() + 2 {
            self.ends.resize(filled.1 + input.len() + 2, 0);
        }
        let mut rest = input;
        loop {
            let (result, nin, nout, nend) = self.core.read_record(
                rest,
                &mut self.output[filled.0..],
                &mut self.ends[filled.1..],
            );
            rest = &rest[nin..];
            filled.0 += nout;
            filled.1 += nend;
            match result {
                Record | End => return true,
                InputEmpty if rest.is_empty() => return false,
                InputEmpty | OutputFull | OutputEndsFull => {
                    // Cannot happen with the sizes above; grow and go on rather than trust it.
                    self.output.resize(self.output.len() * 2 + 64, 0);
                    self.ends.resize(self.ends.len() * 2 + 8, 0);
                }
            }
        }
    }

    /// The fields of the record just completed, trimmed of surrounding whitespace.
    pub(super) fn take(&self, filled: (usize, usize), record: &mut csv::ByteRecord) {
        record.clear();
        let mut start = 0;
        for &end in &self.ends[..filled.1] {
            record.push_field(self.output[start..end].trim_ascii());
            start = end;
        }
    }

    /// Parses one line on its own, ending the record at the end of the line whatever state
    /// the quotes are in.
    pub(super) fn parse_line(&mut self, line: &[u8]) -> csv::ByteRecord {
        self.core.reset();
        let mut filled = (0, 0);
        let line = unpad_quotes(line, self.delimiter);
        if !self.feed(&line, &mut filled) {
            self.feed(&[], &mut filled);
        }
        let mut record = csv::ByteRecord::new();
        self.take(filled, &mut record);
        self.core.reset();
        record
    }
}

pub(super) fn next_non_blank(lines: &mut Lines) -> std::io::Result<Option<Physical>> {
    loop {
        match lines.next()? {
            Some(Physical::Text { bytes, .. }) if bytes.trim_ascii().is_empty() => continue,
            other => return Ok(other),
        }
    }
}
