//! Where audit records go and are read back from: the store's audit stream
//! (a Redis Stream, or the memory store's ring) or a JSON-lines file.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::query::{AuditPage, AuditQuery, Cursor, MAX_SCAN};
use super::{AuditError, AuditRecord};
use crate::config::impersonation::{AuditSettings, DEFAULT_AUDIT_FILE};
use crate::store::{Store, StreamId};

/// Entries asked of the store per round trip while filters are applied.
const READ_CHUNK: usize = 500;

/// How far a record's `time_ms` (the recording node's clock) may be ahead
/// of its stream id (Redis' clock at the write): a read with `since` stops
/// once ids are older than `since` by more than this. Records are written
/// after they are made, so with clocks in step ids are never older.
const CLOCK_SLACK_MS: u64 = 5 * 60 * 1000;

/// Longest line of the audit file read; a longer one (not written by
/// guise) is skipped, so one bad line cannot take the reader's memory.
const MAX_LINE: usize = 64 * 1024;

/// Where the audit is written.
#[derive(Clone)]
pub enum Sink {
    /// The store's audit stream, trimmed to about this many entries
    /// (`AuditSettings::stream_max_len`). Shared by every gateway node on
    /// the same Redis; with the memory store, a ring for tests.
    Store(Arc<dyn Store>, u64),
    /// A JSON-lines file, appended to (created with mode 0600). One
    /// gateway per file: entries are identified by line number.
    File(PathBuf),
}

impl Sink {
    /// The sink `settings` name: its `file` if set; otherwise the store's
    /// stream when the store is shared (Redis), or [`DEFAULT_AUDIT_FILE`]
    /// in `default_dir` (the configuration's directory) with the memory
    /// store, whose ring would not survive a restart.
    pub fn from_settings(
        settings: &AuditSettings,
        store: Arc<dyn Store>,
        default_dir: &Path,
    ) -> Sink {
        match &settings.file {
            Some(path) => Sink::File(path.clone()),
            None if store.kind() == "memory" => Sink::File(default_dir.join(DEFAULT_AUDIT_FILE)),
            None => Sink::Store(store, settings.stream_max_len),
        }
    }

    /// Write `batch` (JSON records), in order, in one go. An error leaves
    /// nothing half-written in a file; the caller keeps the records and
    /// tries again.
    pub(super) async fn write(&self, batch: Vec<String>) -> Result<(), String> {
        match self {
            Sink::Store(store, max_len) => store
                .append_audit(&batch, *max_len)
                .await
                .map_err(|e| e.to_string()),
            Sink::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || append_lines(&path, &batch))
                    .await
                    .map_err(|e| format!("the file writer stopped: {e}"))?
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// One page of the sink's records, newest first.
    pub(super) async fn read(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        match self {
            Sink::Store(store, _) => {
                let before = match q.cursor()? {
                    None => None,
                    Some(Cursor::Stream(id)) => Some(id),
                    Some(Cursor::Line(_)) => return Err(wrong_cursor("`<ms>-<seq>`")),
                };
                read_store(&**store, q, before).await
            }
            Sink::File(path) => {
                let before = match q.cursor()? {
                    None => None,
                    Some(Cursor::Line(n)) => Some(n),
                    Some(Cursor::Stream(_)) => return Err(wrong_cursor("a line number")),
                };
                let (path, q) = (path.clone(), q.clone());
                tokio::task::spawn_blocking(move || read_file(&path, &q, before))
                    .await
                    .map_err(|e| AuditError::Unreadable(format!("the file reader stopped: {e}")))?
            }
        }
    }
}

fn wrong_cursor(expected: &str) -> AuditError {
    AuditError::BadQuery(format!(
        "`before` is not a cursor of this audit, whose entry ids are {expected}; pass the `next` of an earlier page"
    ))
}

impl fmt::Display for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Store(store, _) => write!(f, "the {} store's audit stream", store.kind()),
            Sink::File(path) => write!(f, "the audit file {}", path.display()),
        }
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Store(store, max_len) => f
                .debug_tuple("Store")
                .field(&store.kind())
                .field(max_len)
                .finish(),
            Sink::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

// === the store's stream ===

/// Page through the stream from `before`, newest first, applying the
/// filters, until `limit` records match, the stream ends, or [`MAX_SCAN`]
/// entries were looked at; in the last case `next` lets the caller go on.
async fn read_store(
    store: &dyn Store,
    q: &AuditQuery,
    before: Option<StreamId>,
) -> Result<AuditPage, AuditError> {
    let limit = q.limit();
    let mut page = AuditPage::default();
    let mut cursor = before.map(|id| id.to_string());
    let mut scanned = 0;
    let mut unreadable = 0u64;
    loop {
        if scanned >= MAX_SCAN {
            page.next = cursor;
            break;
        }
        // Without filters every entry matches: ask for just what is
        // missing. With them, ask in larger chunks.
        let want = if q.filters() {
            READ_CHUNK
        } else {
            limit - page.entries.len()
        }
        .min(MAX_SCAN - scanned);
        let chunk = store
            .read_audit(cursor.as_deref(), want)
            .await
            .map_err(|e| AuditError::Unreadable(e.to_string()))?;
        let ended = chunk.len() < want;
        for (id, json) in chunk {
            scanned += 1;
            if let (Some(since), Ok(sid)) = (q.since_ms, id.parse::<StreamId>()) {
                if sid.ms.saturating_add(CLOCK_SLACK_MS) < since {
                    // Everything from here on was written before `since`.
                    log_unreadable(unreadable);
                    return Ok(page);
                }
            }
            let rec = match serde_json::from_str::<AuditRecord>(&json) {
                Ok(r) => r,
                Err(_) => {
                    unreadable += 1;
                    cursor = Some(id);
                    continue;
                }
            };
            if q.matches(&rec) {
                page.entries.push((id.clone(), rec));
                if page.entries.len() >= limit {
                    page.next = Some(id);
                    log_unreadable(unreadable);
                    return Ok(page);
                }
            }
            cursor = Some(id);
        }
        if ended {
            break;
        }
    }
    log_unreadable(unreadable);
    Ok(page)
}

fn log_unreadable(n: u64) {
    if n > 0 {
        tracing::warn!(
            skipped = n,
            "audit entries that are not audit records were skipped"
        );
    }
}

// === the file ===

/// Append `batch` as lines with one `write_all`, then flush. A failure
/// part way (disk full) cuts the file back to where it was, so the retry
/// does not continue half a line. A last line left unterminated by an
/// earlier crash is terminated first, so it does not swallow the next.
fn append_lines(path: &Path, batch: &[String]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let len = file.metadata()?.len();
    let mut buf = Vec::with_capacity(batch.iter().map(|l| l.len() + 1).sum::<usize>() + 1);
    if len > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1)?;
        if last[0] != b'\n' {
            buf.push(b'\n');
        }
    }
    for line in batch {
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
    }
    let written = file.write_all(&buf).and_then(|()| file.flush());
    if let Err(e) = written {
        let _ = file.set_len(len);
        return Err(e);
    }
    Ok(())
}

/// How a line of the file ended.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Read whole into the buffer.
    Whole,
    /// Longer than [`MAX_LINE`]: skipped, the buffer holds nothing useful.
    TooLong,
    /// No newline before the end of the file: still being written.
    Unterminated,
}

/// Read the next line (without its newline) into `buf`, holding at most
/// `max` bytes of it; `None` at the end of the file.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<Line>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok(any.then_some(Line::Unterminated));
        }
        any = true;
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        if !too_long && buf.len() + take <= max {
            buf.extend_from_slice(&avail[..take]);
        } else {
            too_long = true;
            buf.clear();
        }
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Some(if too_long { Line::TooLong } else { Line::Whole }));
        }
    }
}

/// The newest `limit` matching records on lines before `before`, read
/// forward in one pass that holds only those (so memory is bounded by the
/// page, not the file); ids are line numbers from 1.
fn read_file(path: &Path, q: &AuditQuery, before: Option<u64>) -> Result<AuditPage, AuditError> {
    let limit = q.limit();
    let unreadable = |e: io::Error| AuditError::Unreadable(format!("{}: {e}", path.display()));
    let file = match File::open(path) {
        Ok(f) => f,
        // Nothing recorded yet.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AuditPage::default()),
        Err(e) => return Err(unreadable(e)),
    };
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut buf = Vec::new();
    let mut newest = std::collections::VecDeque::with_capacity(limit + 1);
    let mut more = false;
    let mut line_no: u64 = 0;
    let mut skipped = 0u64;
    while let Some(line) = next_line(&mut reader, &mut buf, MAX_LINE).map_err(unreadable)? {
        if line == Line::Unterminated {
            break;
        }
        line_no += 1;
        if before.is_some_and(|b| line_no >= b) {
            break;
        }
        let rec = match line {
            Line::Whole => serde_json::from_slice::<AuditRecord>(&buf).ok(),
            _ => None,
        };
        let Some(rec) = rec else {
            skipped += 1;
            continue;
        };
        if q.matches(&rec) {
            newest.push_back((line_no.to_string(), rec));
            if newest.len() > limit {
                newest.pop_front();
                more = true;
            }
        }
    }
    log_unreadable(skipped);
    let entries: Vec<(String, AuditRecord)> = newest.into_iter().rev().collect();
    let next = match (more, entries.last()) {
        (true, Some((id, _))) => Some(id.clone()),
        _ => None,
    };
    Ok(AuditPage { entries, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str, max: usize) -> Vec<(Line, String)> {
        let mut r = BufReader::with_capacity(4, text.as_bytes());
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(l) = next_line(&mut r, &mut buf, max).unwrap() {
            out.push((l, String::from_utf8(buf.clone()).unwrap()));
        }
        out
    }

    #[test]
    fn lines_are_read_whole_too_long_ones_skipped_and_a_last_unterminated_one_noted() {
        assert_eq!(
            lines("ab\n\n0123456789\ncd\nef", 5),
            vec![
                (Line::Whole, "ab".to_string()),
                (Line::Whole, String::new()),
                (Line::TooLong, String::new()),
                (Line::Whole, "cd".to_string()),
                (Line::Unterminated, "ef".to_string()),
            ]
        );
        assert_eq!(lines("", 5), vec![]);
    }
}
