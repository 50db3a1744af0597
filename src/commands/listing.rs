//! Listing the account's Super SIMs page by page, shared by `export` and `reconcile`: the
//! export columns (a contract, like the results columns), a SIM's fields in that order, and
//! the loop that follows `meta.next_page_url` through the same [`Gate`] as `register`'s
//! requests (rate limit, retries, stop on interrupt or refused credentials), handing each
//! SIM on as it arrives so memory holds one page whatever the account's size.

use crate::api::gate::Gate;
use crate::api::{ApiError, ListedSim, SimFilter};
use crate::config::Target;
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
