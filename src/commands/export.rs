//! The `export` command: every Super SIM on the account (or those with a status, in a
//! Fleet) as CSV, page by page.
//!
//! Pages are read one after another, each through the same [`Gate`] as `register`'s
//! requests (rate limit, retries, stop on interrupt or refused credentials), and each SIM is
//! written as it arrives: memory holds one page whatever the account's size. With
//! `-o FILE` the CSV goes to a temporary file beside FILE, renamed over it only once the
//! last page is written, so a failed export leaves any earlier one as it was; a symbolic
//! link at FILE, or a file that is not an export, is refused rather than overwritten.

use std::io::{BufRead, Read as _, Write};

use clap::ValueEnum as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::api::gate::Gate;
use crate::api::{ApiError, ListedSim, SimFilter};
use crate::cli::ExportArgs;
use crate::config::{AccountConfig, Target};
use crate::exit;

/// The export columns, in order: a contract, like the results columns.
pub const EXPORT_COLUMNS: [&str; 8] = [
    "sid",
    "iccid",
    "status",
    "fleet_sid",
    "unique_name",
    "date_created",
    "date_updated",
    "account_sid",
];

/// Why a listing stopped before its last page.
#[derive(Debug)]
pub enum ListError {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The API answered 401: the credentials are wrong.
    CredentialsRefused,
    /// A page failed for good (after retries, where retrying made sense).
    Api(ApiError),
    /// What was done with a SIM failed (a write, a spool).
    Other(anyhow::Error),
}

impl ListError {
    /// Prints the error for a person and returns the exit code.
    pub fn report(self, target: &Target) -> u8 {
        match self {
            ListError::Interrupted => {
                crate::logs::error("interrupted before the last page");
                exit::INTERRUPTED
            }
            ListError::CredentialsRefused => {
                crate::logs::error(format_args!(
                    "the API refused the credentials (HTTP 401, Twilio error 20003); \
                     check {}",
                    super::connect::credentials_source(target)
                ));
                exit::USAGE_OR_CONFIG
            }
            ListError::Api(error) => {
                crate::logs::error(format_args!("cannot list the account's SIMs: {error}"));
                exit::USAGE_OR_CONFIG
            }
            ListError::Other(error) => {
                crate::logs::error(format_args!("{error:#}"));
                exit::USAGE_OR_CONFIG
            }
        }
    }
}

/// Reads every page of the listing `filter` asks for, through `gate`, handing each SIM to
/// `each` as it arrives. Returns the number of pages read.
pub async fn list_sims(
    gate: &Gate,
    filter: &SimFilter,
    mut each: impl FnMut(ListedSim) -> anyhow::Result<()>,
) -> Result<u64, ListError> {
    let mut path = filter.first_page();
    let mut pages = 0u64;
    loop {
        let page = gate
            .read_with_retries(pages, || gate.client().list_sims_page(&path))
            .await;
        let page = match page {
            Ok(page) => page,
            Err(Some(error)) => return Err(ListError::Api(error)),
            Err(None) if gate.credentials_refused().is_cancelled() => {
                return Err(ListError::CredentialsRefused);
            }
            Err(None) => return Err(ListError::Interrupted),
        };
        pages += 1;
        tracing::debug!(page = pages, sims = page.sims.len(), "read a page of SIMs");
        for sim in page.sims {
            each(sim).map_err(ListError::Other)?;
        }
        match page.next {
            // A server that names the same page again would keep this loop going for ever.
            Some(next) if next == path => {
                return Err(ListError::Other(anyhow::anyhow!(
                    "the API named page {pages} as its own next page; stopping"
                )));
            }
            Some(next) => path = next,
            None => return Ok(pages),
        }
    }
}

/// The fields of a SIM in [`EXPORT_COLUMNS`] order; an absent value is an empty cell.
pub fn export_fields(sim: &ListedSim) -> [&str; 8] {
    [
        &sim.sid,
        &sim.iccid,
        &sim.status,
        &sim.fleet_sid,
        &sim.unique_name,
        &sim.date_created,
        &sim.date_updated,
        &sim.account_sid,
    ]
    .map(|field| field.as_deref().unwrap_or_default())
}

/// Refuses an output path that must not be replaced: a symbolic link (whatever it points
/// at), something other than a regular file, or a file whose first line is not the export
/// header.
pub fn check_output(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => bail!("cannot check the output {shown}: {error}"),
    };
    if metadata.file_type().is_symlink() {
        bail!(
            "the output {shown} is a symbolic link; export does not write through one: \
             remove the link or pass another path"
        );
    }
    if !metadata.is_file() {
        bail!("the output {shown} is not a regular file; pass the path of a file");
    }
    let mut first_line = String::new();
    std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("cannot read the output {shown}"))?,
    )
    .take(4096)
    .read_line(&mut first_line)
    .with_context(|| format!("cannot read the output {shown}"))?;
    if first_line.trim_end() != EXPORT_COLUMNS.join(",") && metadata.len() > 0 {
        bail!(
            "the output {shown} exists and is not an export (its first line is not \
             `{}`); export replaces only its own files: remove it or pass another path",
            EXPORT_COLUMNS.join(",")
        );
    }
    Ok(())
}

/// `export`: lists the SIMs to stdout or `-o FILE`; `stop` ends it between pages.
pub async fn run(args: ExportArgs, stop: CancellationToken) -> u8 {
    let config = match super::connect::account_config(&args.account) {
        Ok(config) => config,
        Err(code) => return code,
    };
    super::connect::log_start("export", &config.target, None);
    let output = args.output.filter(|path| path.as_os_str() != "-");
    if let Some(path) = &output
        && let Err(error) = check_output(path)
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
    match export(&config, &filter, output.as_deref(), stop).await {
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
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
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

/// Writes the CSV; returns (SIMs, pages).
async fn export(
    config: &AccountConfig,
    filter: &SimFilter,
    output: Option<&Path>,
    stop: CancellationToken,
) -> Result<(u64, u64), ListError> {
    let (client, _emulator) = super::connect::connect(&config.target, config.timeout)
        .await
        .map_err(ListError::Other)?;
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
    let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(sink));
    // The header waits for the first page, so a refused request prints no half an export.
    let mut sims = 0u64;
    let pages = list_sims(&gate, filter, |sim| {
        if sims == 0 {
            writer.write_record(EXPORT_COLUMNS)?;
        }
        writer
            .write_record(export_fields(&sim))
            .context("cannot write the export")?;
        sims += 1;
        Ok(())
    })
    .await;
    let pages = pages?;
    if sims == 0 {
        writer
            .write_record(EXPORT_COLUMNS)
            .context("cannot write the export")
            .map_err(other)?;
    }
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
