//! `credshift accounts import`: streams a CSV or JSON Lines file of existing
//! members with their existing hashes into the store, a batch per
//! transaction, in bounded memory. A bad row is reported with its line and
//! skipped; the rest goes on.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;

use crate::engine::cutover::given_by_completed_splits;
use crate::hashing;
use crate::names::{Email, LoginId, Name};
use crate::store::{ImportOutcome, ImportRow, Store, StoreError};

/// Input file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Header `login_id,base_email,<credential>...`; a cell holds a hash or is empty.
    Csv,
    /// One JSON object per line with the same fields; a credential is a hash or null.
    Jsonl,
}

impl Format {
    /// From the file extension: `.jsonl`/`.ndjson` are JSON Lines, anything else CSV.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => Format::Jsonl,
            _ => Format::Csv,
        }
    }
}

/// Whether anything else writes to the store while an import runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sharing {
    /// Members (through the API) or the controller may write meanwhile: on
    /// SQLite, whose one write lock has no queue, the import leaves it free
    /// after each batch as long as the batch held it, so their writes get in.
    #[default]
    Shared,
    /// Nothing else writes (a first load, before the API and the controller
    /// start): batches follow each other at once, about twice as fast on
    /// SQLite; another writer would wait for the whole import.
    Exclusive,
}

/// How an import writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// Rows per transaction (1 to 5,000).
    pub batch_size: usize,
    pub sharing: Sharing,
}

impl ImportOptions {
    /// `batch_size` rows per transaction, in a store other writers share.
    pub fn batches_of(batch_size: usize) -> Self {
        ImportOptions {
            batch_size,
            sharing: Sharing::Shared,
        }
    }
}

/// A row that was not imported, with its line number and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub line: u64,
    pub message: String,
}

/// What an import did, row by row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub imported: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows that differ from the stored account; the stored values were kept.
    pub kept: u64,
    pub failed: u64,
    /// Rows given credentials by cutovers completed before the import
    /// (their targets, copied from the source; a retired source dropped).
    pub given_by_cutovers: u64,
    /// How long the import left the write lock free between batches.
    pub paused: Duration,
}

/// Why an import could not run at all (a bad row is a [`RowProblem`] instead).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A note about one row: a failure, or a difference that was kept as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowNote {
    Failed(RowProblem),
    Kept(RowProblem),
}

type Parsed = Result<ImportRow, RowProblem>;

/// Imports `path` into `realm`, `options.batch_size` rows per transaction. `note` is
/// called for every failed row and every row kept as stored, in file order.
pub async fn import_file(
    store: &Store,
    realm: &str,
    path: &Path,
    format: Format,
    options: ImportOptions,
    now: Timestamp,
    mut note: impl FnMut(RowNote),
) -> Result<ImportSummary, ImportError> {
    Name::parse(realm).map_err(|reason| ImportError::File {
        path: path.to_owned(),
        reason: format!("realm {realm:?} {reason}"),
    })?;
    let file = File::open(path).map_err(|e| ImportError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let batch_size = options.batch_size.clamp(1, 5_000);
    // The parser runs on a blocking thread and hands over whole batches; two
    // in flight at most, so memory stays bounded however large the file.
    let (tx, mut rx) = mpsc::channel::<Vec<Parsed>>(2);
    let path_owned = path.to_owned();
    let parser = tokio::task::spawn_blocking(move || {
        let reader = BufReader::with_capacity(1 << 16, file);
        match format {
            Format::Csv => parse_csv(reader, batch_size, &tx),
            Format::Jsonl => parse_jsonl(reader, batch_size, &tx),
        }
        .map_err(|reason| ImportError::File {
            path: path_owned,
            reason,
        })
    });

    // Members imported after a cutover completed get what it gave everyone.
    let splits = store.known_splits(realm).await?;
    let mut summary = ImportSummary::default();
    while let Some(batch) = rx.recv().await {
        let mut rows = Vec::with_capacity(batch.len());
        for parsed in batch {
            match parsed {
                Ok(mut row) => {
                    let (given, dropped) = given_by_completed_splits(&row.credentials, &splits);
                    if !given.is_empty() || !dropped.is_empty() {
                        summary.given_by_cutovers += 1;
                    }
                    row.credentials.retain(|(n, _)| !dropped.contains(n));
                    row.given = given;
                    rows.push(row);
                }
                Err(problem) => {
                    summary.failed += 1;
                    note(RowNote::Failed(problem));
                }
            }
        }
        // A login ID repeated within a batch goes into the next sub-batch, so
        // it is compared with the first occurrence once that is stored.
        while !rows.is_empty() {
            let mut seen = HashSet::new();
            let (now_rows, later): (Vec<ImportRow>, Vec<ImportRow>) = rows
                .into_iter()
                .partition(|r| seen.insert(r.login_id.clone()));
            let clock = std::time::Instant::now();
            let outcomes = store.import_batch(realm, &now_rows, "import", now).await?;
            // Members' writes (throttling, changes) go between batches.
            if options.sharing == Sharing::Shared {
                summary.paused += store.yield_to_writers(clock.elapsed()).await;
            }
            for (row, outcome) in now_rows.iter().zip(outcomes) {
                match outcome {
                    ImportOutcome::Imported => summary.imported += 1,
                    ImportOutcome::Updated { .. } => summary.updated += 1,
                    ImportOutcome::Unchanged => summary.unchanged += 1,
                    ImportOutcome::Kept { differences, .. } => {
                        summary.kept += 1;
                        note(RowNote::Kept(RowProblem {
                            line: row.line,
                            message: format!(
                                "login ID {:?}: {}",
                                row.login_id,
                                differences.join("; ")
                            ),
                        }));
                    }
                }
            }
            rows = later;
        }
    }
    match parser.await {
        Ok(result) => result?,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
    if summary.imported + summary.updated > 0 {
        store.analyze().await?;
    }
    Ok(summary)
}

/// Checks one row's fields; the message names the field.
fn check_row(
    line: u64,
    login_id: &str,
    base_email: &str,
    credentials: Vec<(String, String)>,
) -> Parsed {
    let problem = |message: String| RowProblem { line, message };
    LoginId::parse(login_id).map_err(|e| problem(format!("field login_id {e}")))?;
    Email::parse(base_email).map_err(|e| problem(format!("field base_email {e}")))?;
    for (name, hash) in &credentials {
        hashing::validate(hash)
            .and_then(|_| hashing::check_ceiling(hash))
            .map_err(|e| problem(format!("field {name}: {e}")))?;
    }
    Ok(ImportRow {
        line,
        login_id: login_id.to_owned(),
        base_email: base_email.to_owned(),
        credentials,
        given: Vec::new(),
    })
}

fn check_credential_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), String> {
    for name in names {
        Name::parse(name).map_err(|e| format!("credential column {name:?} {e}"))?;
    }
    Ok(())
}

fn send(
    tx: &mpsc::Sender<Vec<Parsed>>,
    batch: &mut Vec<Parsed>,
    size: usize,
) -> Result<(), String> {
    let full = std::mem::replace(batch, Vec::with_capacity(size));
    tx.blocking_send(full)
        .map_err(|_| "import stopped before the file was read".to_owned())
}

fn parse_csv(
    reader: impl std::io::Read,
    size: usize,
    tx: &mpsc::Sender<Vec<Parsed>>,
) -> Result<(), String> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let header = csv
        .headers()
        .map_err(|e| format!("line 1: cannot read the header: {e}"))?
        .clone();
    let columns: Vec<&str> = header.iter().map(str::trim).collect();
    if columns.len() < 2 || columns[0] != "login_id" || columns[1] != "base_email" {
        return Err("line 1: the header must start with login_id,base_email".into());
    }
    check_credential_names(columns[2..].iter().copied()).map_err(|e| format!("line 1: {e}"))?;
    let mut unique = HashSet::new();
    if let Some(dup) = columns.iter().find(|c| !unique.insert(**c)) {
        return Err(format!("line 1: column {dup:?} appears twice"));
    }

    let mut batch = Vec::with_capacity(size);
    let mut record = csv::StringRecord::new();
    loop {
        let line = csv.position().line() + 1;
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line());
                batch.push(if record.len() != columns.len() {
                    let hint = if record.iter().any(|cell| cell.starts_with("$argon2")) {
                        " (argon2 hashes contain commas: put them in double quotes)"
                    } else {
                        ""
                    };
                    Err(RowProblem {
                        line,
                        message: format!(
                            "expected {} fields, found {}{hint}",
                            columns.len(),
                            record.len()
                        ),
                    })
                } else {
                    let credentials = columns[2..]
                        .iter()
                        .zip(record.iter().skip(2))
                        .filter(|(_, cell)| !cell.trim().is_empty())
                        .map(|(name, cell)| ((*name).to_owned(), cell.trim().to_owned()))
                        .collect();
                    check_row(
                        line,
                        record.get(0).unwrap_or_default().trim(),
                        record.get(1).unwrap_or_default().trim(),
                        credentials,
                    )
                });
            }
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                batch.push(Err(RowProblem {
                    line,
                    message: format!("unreadable CSV: {}", e.kind_message()),
                }));
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    return Err(format!("line {line}: cannot read on: {e}"));
                }
            }
        }
        if batch.len() >= size {
            send(tx, &mut batch, size)?;
        }
    }
    if !batch.is_empty() {
        send(tx, &mut batch, size)?;
    }
    Ok(())
}

/// csv's messages repeat the position; keep just the reason.
trait KindMessage {
    fn kind_message(&self) -> String;
}

impl KindMessage for csv::Error {
    fn kind_message(&self) -> String {
        match self.kind() {
            csv::ErrorKind::Utf8 { err, .. } => {
                format!("field {} is not valid UTF-8", err.field() + 1)
            }
            _ => self.to_string(),
        }
    }
}

fn parse_jsonl(
    reader: impl BufRead,
    size: usize,
    tx: &mpsc::Sender<Vec<Parsed>>,
) -> Result<(), String> {
    let mut batch = Vec::with_capacity(size);
    for (index, line) in reader.split(b'\n').enumerate() {
        let line_no = index as u64 + 1;
        let bytes = line.map_err(|e| format!("line {line_no}: {e}"))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        batch.push(parse_json_row(line_no, &bytes));
        if batch.len() >= size {
            send(tx, &mut batch, size)?;
        }
    }
    if !batch.is_empty() {
        send(tx, &mut batch, size)?;
    }
    Ok(())
}

fn parse_json_row(line: u64, bytes: &[u8]) -> Parsed {
    let problem = |message: String| RowProblem { line, message };
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)
        .map_err(|e| problem(format!("column {}: not a JSON object: {e}", e.column())))?;
    let text = |field: &str| -> Result<String, RowProblem> {
        match object.get(field) {
            Some(serde_json::Value::String(s)) => Ok(s.trim().to_owned()),
            Some(_) => Err(problem(format!("field {field} must be a string"))),
            None => Err(problem(format!("field {field} is missing"))),
        }
    };
    let login_id = text("login_id")?;
    let base_email = text("base_email")?;
    let mut credentials = Vec::new();
    for (name, value) in &object {
        if name == "login_id" || name == "base_email" {
            continue;
        }
        check_credential_names(std::iter::once(name.as_str())).map_err(problem)?;
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) if s.trim().is_empty() => {}
            serde_json::Value::String(s) => credentials.push((name.clone(), s.trim().to_owned())),
            _ => {
                return Err(problem(format!(
                    "field {name} must be a hash string or null"
                )));
            }
        }
    }
    check_row(line, &login_id, &base_email, credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rows_name_the_bad_field() {
        let err = parse_json_row(7, br#"{"login_id": "ab1", "base_email": 3}"#).unwrap_err();
        assert_eq!(err.line, 7);
        assert!(err.message.contains("base_email"), "{}", err.message);
        let err = parse_json_row(
            8,
            br#"{"login_id": "ab1", "base_email": "a@b.jp", "Login": null}"#,
        )
        .unwrap_err();
        assert!(err.message.contains("Login"), "{}", err.message);
        let err = parse_json_row(9, b"{not json").unwrap_err();
        assert!(err.message.contains("column"), "{}", err.message);
    }

    #[test]
    fn json_null_and_empty_mean_no_credential() {
        let row = parse_json_row(
            1,
            br#"{"login_id": "ab1", "base_email": "a@b.jp", "ftp": null, "mail": ""}"#,
        )
        .unwrap();
        assert!(row.credentials.is_empty());
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(Format::from_path(Path::new("m.jsonl")), Format::Jsonl);
        assert_eq!(Format::from_path(Path::new("m.csv")), Format::Csv);
    }
}
