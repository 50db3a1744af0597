//! What kind of file `reconcile` reads (a results file or an export), where its columns
//! are, and one of its rows as compared.

use std::path::Path;

use anyhow::{Context, bail};

use crate::commands::listing::EXPORT_COLUMNS;
use crate::results::{Outcome, PENDING_MESSAGE};

/// More accounts than this in one file are not noted one by one: one other is enough to
/// refuse it.
const ACCOUNTS_NOTED: usize = 4;

/// The accounts a file's rows were written against, as it is read.
#[derive(Debug, Default)]
pub(super) struct WrittenOn(pub(super) Vec<String>);

impl WrittenOn {
    pub(super) fn note(&mut self, account: &[u8]) {
        if account.is_empty() || self.0.len() >= ACCOUNTS_NOTED {
            return;
        }
        let account = String::from_utf8_lossy(account);
        if !self.0.iter().any(|known| *known == account) {
            self.0.push(account.into_owned());
        }
    }

    /// The refusal when the file was written against another account than `account`.
    pub(super) fn refusal(&self, path: &Path, account: &str) -> Option<String> {
        let other = self.0.iter().find(|written_on| *written_on != account)?;
        let emulator = crate::emulator::TEST_ACCOUNT_SID;
        let note = if other == emulator {
            format!(
                " ({emulator} is the built-in emulator's account: the file holds a rehearsal's results)"
            )
        } else if account == emulator {
            format!(
                " ({emulator} is the built-in emulator's account: it holds only a rehearsal's SIMs)"
            )
        } else {
            String::new()
        };
        Some(format!(
            "{} was written against account {other}, and these credentials are for account \
             {account}{note}: its rows say nothing true about this account, and every SIM \
             would be reported missing. Reconcile it with the credentials of {other}, or pass \
             a file written against {account}",
            path.display()
        ))
    }
}

/// What kind of file is being reconciled, and where its columns are.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) results: bool,
    pub(super) line: Option<usize>,
    pub(super) iccid: usize,
    pub(super) outcome: Option<usize>,
    pub(super) sid: usize,
    pub(super) status: usize,
    pub(super) fleet_sid: usize,
    pub(super) unique_name: Option<usize>,
    pub(super) error_message: Option<usize>,
    /// The account the row was written against (results files of this version, exports).
    pub(super) account: Option<usize>,
}

impl Layout {
    pub(super) fn of(headers: &csv::StringRecord, path: &Path) -> anyhow::Result<Layout> {
        let col = |name: &str| headers.iter().position(|h| h == name);
        let names: Vec<&str> = headers.iter().collect();
        let results_start = ["line", "iccid", "outcome"];
        let export = EXPORT_COLUMNS;
        if names.len() >= 6 && names[..3] == results_start {
            let need = |name| {
                col(name).with_context(|| {
                    format!(
                        "{} is a results file without a `{name}` column",
                        path.display()
                    )
                })
            };
            return Ok(Layout {
                results: true,
                line: col("line"),
                iccid: 1,
                outcome: Some(2),
                sid: need("sid")?,
                status: need("status")?,
                fleet_sid: need("fleet_sid")?,
                unique_name: col("unique_name"),
                error_message: col("error_message"),
                account: col("account_sid"),
            });
        }
        if names == export {
            return Ok(Layout {
                results: false,
                line: None,
                iccid: 1,
                outcome: None,
                sid: 0,
                status: 2,
                fleet_sid: 3,
                unique_name: Some(4),
                error_message: None,
                account: Some(7),
            });
        }
        bail!(
            "{} is neither a results file (a header starting `line,iccid,outcome`) nor an \
             export (`{}`); pass the results file that register wrote",
            path.display(),
            export.join(",")
        )
    }

    /// The row at `record`, as compared.
    pub(super) fn row(&self, record: &csv::StringRecord) -> anyhow::Result<FileRow> {
        let get = |i: usize| record.get(i).unwrap_or_default().to_string();
        Ok(FileRow {
            line: match self.line {
                Some(i) => get(i),
                None => record.position().map_or(0, |p| p.line()).to_string(),
            },
            iccid: get(self.iccid),
            outcome: match self.outcome {
                Some(i) => Some(get(i).parse().map_err(|e: String| anyhow::anyhow!(e))?),
                None => None,
            },
            sid: get(self.sid),
            status: get(self.status),
            fleet_sid: get(self.fleet_sid),
            unique_name: self.unique_name.map(get),
            pending: self
                .error_message
                .is_some_and(|i| get(i) == PENDING_MESSAGE),
        })
    }
}

/// One row of the file, as compared.
pub(super) struct FileRow {
    pub(super) line: String,
    pub(super) iccid: String,
    pub(super) outcome: Option<Outcome>,
    pub(super) sid: String,
    pub(super) status: String,
    pub(super) fleet_sid: String,
    pub(super) unique_name: Option<String>,
    pub(super) pending: bool,
}
