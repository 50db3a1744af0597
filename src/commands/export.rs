//! The `export` command: every Super SIM on the account (or those with a status, in a
//! Fleet) as CSV, page by page.
//!
//! Pages are read by [`super::listing`] (the same rate limit, retries and stops as
//! `register`, and never round in a circle), and each SIM is written as it arrives. With
//! `-o FILE` the CSV goes to a temporary file beside FILE, renamed over it only once the
//! last page is written, so a failed export leaves any earlier one as it was; anything but
//! a regular file at FILE (a symbolic link, a device, a pipe), or a file that is not an
//! export, is refused rather than replaced.
//!
//! `--format json` writes JSON Lines: one object per SIM, keyed by the export columns, so
//! it streams as the CSV does and `jq` reads each SIM as it comes.

use std::io::{BufRead, Read as _, Write};

use clap::ValueEnum as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::listing::{EXPORT_COLUMNS, ListError, export_fields, list_sims};
use crate::api::ListedSim;
use crate::api::SimFilter;
use crate::api::gate::Gate;
use crate::cli::{ExportArgs, ExportFormat};
use crate::config::AccountConfig;
use crate::exit;
use crate::results::cell::spreadsheet_safe;

/// Refuses an output path that must not be replaced: anything but a regular file or a new
/// path (a symbolic link, whatever it points at, a device, a pipe), or a file that is not
/// empty and is not an export in `format` (its first line is not the CSV header, or not a
/// JSON object keyed by the export columns).
pub(crate) fn check_output(path: &Path, format: ExportFormat) -> anyhow::Result<()> {
    let shown = path.display();
    let what = crate::paths::not_replaceable(path)
        .with_context(|| format!("cannot check the output {shown}"))?;
    if let Some(what) = what {
        bail!(
            "the output {shown} is {what}: export writes beside it and renames over it, which \
             replaces only a regular file (never through a link); pass the path of a regular \
             file or a new one"
        );
    }
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mut first_line = String::new();
    std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("cannot read the output {shown}"))?,
    )
    .take(4096)
    .read_line(&mut first_line)
    .with_context(|| format!("cannot read the output {shown}"))?;
    if metadata.len() == 0 {
        return Ok(());
    }
    match format {
        ExportFormat::Csv if first_line.trim_end() != EXPORT_COLUMNS.join(",") => bail!(
            "the output {shown} exists and is not an export (its first line is not \
             `{}`); export replaces only its own files: remove it or pass another path",
            EXPORT_COLUMNS.join(",")
        ),
        ExportFormat::Json if !is_json_export_line(&first_line) => bail!(
            "the output {shown} exists and is not a JSON export (its first line is not an \
             object with the keys {}); export replaces only its own files: remove it or \
             pass another path",
            EXPORT_COLUMNS.join(", ")
        ),
        _ => Ok(()),
    }
}

/// True for a line of a JSON export: an object whose keys are the export columns.
fn is_json_export_line(line: &str) -> bool {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line) {
        Ok(object) => {
            object.len() == EXPORT_COLUMNS.len()
                && EXPORT_COLUMNS.iter().all(|key| object.contains_key(*key))
        }
        Err(_) => false,
    }
}

/// One SIM as a JSON export line: the export columns, in their order, an absent value null.
#[derive(serde::Serialize)]
struct JsonSim<'a> {
    sid: Option<&'a str>,
    iccid: Option<&'a str>,
    status: Option<&'a str>,
    fleet_sid: Option<&'a str>,
    unique_name: Option<&'a str>,
    date_created: Option<&'a str>,
    date_updated: Option<&'a str>,
    account_sid: Option<&'a str>,
}

impl<'a> JsonSim<'a> {
    fn of(sim: &'a ListedSim) -> Self {
        JsonSim {
            sid: sim.sid.as_deref(),
            iccid: sim.iccid.as_deref(),
            status: sim.status.as_deref(),
            fleet_sid: sim.fleet_sid.as_deref(),
            unique_name: sim.unique_name.as_deref(),
            date_created: sim.date_created.as_deref(),
            date_updated: sim.date_updated.as_deref(),
            account_sid: sim.account_sid.as_deref(),
        }
    }
}

/// Where the SIMs go, in the chosen format.
enum Sink {
    /// The CSV; its header waits for the first SIM (or the end), so a refused request
    /// prints no half an export.
    Csv {
        /// Boxed: the CSV writer carries its own buffer, the JSON side only a pointer.
        writer: Box<csv::Writer<std::io::BufWriter<Box<dyn Write>>>>,
        header_written: bool,
    },
    Json(std::io::BufWriter<Box<dyn Write>>),
}

impl Sink {
    fn new(format: ExportFormat, out: Box<dyn Write>) -> Sink {
        let out = std::io::BufWriter::new(out);
        match format {
            ExportFormat::Csv => Sink::Csv {
                writer: Box::new(csv::Writer::from_writer(out)),
                header_written: false,
            },
            ExportFormat::Json => Sink::Json(out),
        }
    }

    fn header(&mut self) -> anyhow::Result<()> {
        if let Sink::Csv {
            writer,
            header_written,
        } = self
            && !*header_written
        {
            writer.write_record(EXPORT_COLUMNS)?;
            *header_written = true;
        }
        Ok(())
    }

    fn sim(&mut self, sim: &ListedSim) -> anyhow::Result<()> {
        self.header()?;
        match self {
            // A spreadsheet opens a CSV export as it opens the results file, so the
            // server's words are marked as text alike; JSON Lines are for programs.
            Sink::Csv { writer, .. } => {
                let fields = export_fields(sim).map(spreadsheet_safe);
                writer.write_record(fields.iter().map(|field| field.as_bytes()))?;
            }
            Sink::Json(out) => {
                serde_json::to_writer(&mut *out, &JsonSim::of(sim))?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        // An empty CSV export still has its header; an empty JSON Lines export is empty.
        self.header()?;
        match self {
            Sink::Csv { writer, .. } => writer.flush()?,
            Sink::Json(out) => out.flush()?,
        }
        Ok(())
    }
}

/// `export`: lists the SIMs to stdout or `-o FILE`; `stop` ends it between pages.
pub(crate) async fn run(args: ExportArgs, stop: CancellationToken) -> u8 {
    let config = match super::connect::account_config(&args.account) {
        Ok(config) => config,
        Err(code) => return code,
    };
    super::connect::log_start("export", &config.target, None);
    let output = args.output.filter(|path| path.as_os_str() != "-");
    if let Some(path) = &output
        && let Err(error) = check_output(path, args.format)
    {
        crate::logs::error(format_args!("{error:#}"));
        return exit::USAGE_OR_CONFIG;
    }
    let filter = SimFilter {
        status: args
            .status
            .and_then(|s| s.to_possible_value())
            .map(|v| v.get_name().to_string()),
        fleet: args.fleet,
        page_size: config.page_size,
    };
    match export(&config, &filter, (args.format, output.as_deref()), stop).await {
        Ok((sims, pages)) => {
            let place = output
                .as_ref()
                .map_or_else(|| "stdout".to_string(), |p| p.display().to_string());
            tracing::info!(sims, pages, output = %place, "exported the account's SIMs");
            exit::SUCCESS
        }
        // A reader that went away early (`| head`) is not an error.
        Err(ListError::Other(error)) if output.is_none() && is_broken_pipe(&error) => exit::SUCCESS,
        Err(error) => error.report(&config.target),
    }
}

/// True when writing failed because the reader of a pipe went away.
pub(crate) fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>().or_else(|| {
            match cause.downcast_ref::<csv::Error>().map(csv::Error::kind) {
                Some(csv::ErrorKind::Io(io)) => Some(io),
                _ => None,
            }
        });
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes the export; returns (SIMs, pages).
async fn export(
    config: &AccountConfig,
    filter: &SimFilter,
    (format, output): (ExportFormat, Option<&Path>),
    stop: CancellationToken,
) -> Result<(u64, u64), ListError> {
    let (client, _emulator) = super::connect::connect(&config.target, config.timeout)
        .await
        .map_err(ListError::Other)?;
    // The account the SIMs must be listed as (`TWILIO_ACCOUNT_SID` beside an API key).
    client.know_account(config.account_sid.as_deref());
    let gate = Gate::new(client, config.limits, stop);
    let other = |e: anyhow::Error| ListError::Other(e);
    let (sink, temp): (Box<dyn Write>, Option<(tempfile::NamedTempFile, PathBuf)>) = match output {
        None => (Box::new(std::io::stdout().lock()), None),
        Some(path) => {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let temp = tempfile::Builder::new()
                .prefix(".supersim-bulk-export-")
                .suffix(".tmp")
                .tempfile_in(dir)
                .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
                .map_err(other)?;
            let file = temp
                .reopen()
                .context("cannot open the temporary file")
                .map_err(other)?;
            (Box::new(file), Some((temp, path.to_path_buf())))
        }
    };
    let mut writer = Sink::new(format, sink);
    let mut sims = 0u64;
    let pages = list_sims(&gate, filter, |sim| {
        writer.sim(&sim).context("cannot write the export")?;
        sims += 1;
        Ok(())
    })
    .await;
    let pages = pages?;
    writer
        .flush()
        .context("cannot write the export")
        .map_err(other)?;
    drop(writer);
    if let Some((temp, path)) = temp {
        temp.as_file()
            .sync_all()
            .context("cannot write the export")
            .map_err(other)?;
        temp.persist(&path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot rename the export into place at {}", path.display()))
            .map_err(other)?;
    }
    Ok((sims, pages))
}
