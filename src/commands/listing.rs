//! Listing the account's Super SIMs page by page, shared by `export` and `reconcile`: the
//! export columns (a contract, like the results columns), a SIM's fields in that order, and
//! the loop that follows `meta.next_page_url` through the same [`Gate`] as `register`'s
//! requests (rate limit, retries, stop on interrupt or refused credentials), handing each
//! SIM on as it arrives so memory holds one page whatever the account's size.
//!
//! A listing always ends: a page whose address or page token was read before, or whose
//! page number does not come after the last one, stops it (a server or proxy that sends
//! page 0 -> page 1 -> page 0 would otherwise keep it going for ever, the same SIMs
//! written again and again). Twilio's `meta` carries no total, so the page numbers in
//! `next_page_url` are the bound it gives.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::api::gate::Gate;
use crate::api::{ApiError, ListedSim, Refusal, SimFilter};
use crate::config::Target;
use crate::exit;

/// The export columns, in order: a contract, like the results columns.
pub(crate) const EXPORT_COLUMNS: [&str; 8] = [
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
pub(crate) enum ListError {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The API answered 401: the credentials are wrong.
    CredentialsRefused(Refusal),
    /// A page failed for good (after retries, where retrying made sense).
    Api(ApiError),
    /// The API named a page read before as the next one: the sentence says which.
    Cycle(String),
    /// What was done with a SIM failed (a write, a spool).
    Other(anyhow::Error),
}

impl ListError {
    /// Prints the error for a person and returns the exit code.
    pub(crate) fn report(self, target: &Target) -> u8 {
        match self {
            ListError::Interrupted => {
                crate::logs::error("interrupted before the last page");
                exit::INTERRUPTED
            }
            ListError::CredentialsRefused(refusal) => {
                crate::logs::error(format_args!(
                    "the API refused the credentials ({refusal}); check {}",
                    super::connect::credentials_source(target)
                ));
                exit::USAGE_OR_CONFIG
            }
            ListError::Api(error) => {
                crate::logs::error(format_args!("cannot list the account's SIMs: {error}"));
                exit::USAGE_OR_CONFIG
            }
            ListError::Cycle(sentence) => {
                crate::logs::error(sentence);
                exit::TEMPORARY_FAILURE
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
pub(crate) async fn list_sims(
    gate: &Gate,
    filter: &SimFilter,
    mut each: impl FnMut(ListedSim) -> anyhow::Result<()>,
) -> Result<u64, ListError> {
    let mut path = filter.first_page();
    let mut trail = PageTrail::starting_at(&path);
    let mut pages = 0u64;
    loop {
        let page = gate
            .read_with_retries(pages, || gate.client().list_sims_page(&path))
            .await;
        let page = match page {
            Ok(page) => page,
            Err(Some(error)) => return Err(ListError::Api(error)),
            Err(None) => {
                return Err(match gate.refusal() {
                    Some(refusal) => ListError::CredentialsRefused(refusal),
                    None => ListError::Interrupted,
                });
            }
        };
        pages += 1;
        tracing::debug!(page = pages, sims = page.sims.len(), "read a page of SIMs");
        for sim in page.sims {
            each(sim).map_err(ListError::Other)?;
        }
        match page.next {
            Some(next) => {
                trail.follow(&next, pages).map_err(ListError::Cycle)?;
                path = next;
            }
            None => return Ok(pages),
        }
    }
}

/// The pages a listing has asked for, so it can refuse one it has read before. Addresses
/// and tokens are kept as 64-bit hashes: a few bytes a page, whatever the account's size.
struct PageTrail {
    /// Each address read, its query pairs in order and a missing `Page` read as 0, so the
    /// first page (`?PageSize=50`) and `?PageSize=50&Page=0` are one page.
    addresses: HashSet<u64>,
    /// Each `PageToken` read: a token names a place in the list, whatever the page number.
    tokens: HashSet<u64>,
    /// The `Page` number of the last page read.
    page: u64,
}

/// One page address, by the parts that say which page it is.
struct PageAddress {
    key: u64,
    token: Option<u64>,
    number: Option<u64>,
}

impl PageAddress {
    fn of(path: &str) -> PageAddress {
        let query = path.split_once('?').map_or("", |(_, query)| query);
        let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        let number = match pairs.iter().find(|(name, _)| name == "Page") {
            Some((_, value)) => value.parse().ok(),
            None => {
                pairs.push(("Page".into(), "0".into()));
                Some(0)
            }
        };
        pairs.sort();
        let token = pairs
            .iter()
            .find(|(name, _)| name == "PageToken")
            .map(|(_, value)| hash(value));
        PageAddress {
            key: hash(&pairs),
            token,
            number,
        }
    }
}

fn hash(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

impl PageTrail {
    fn starting_at(first: &str) -> PageTrail {
        let mut trail = PageTrail {
            addresses: HashSet::new(),
            tokens: HashSet::new(),
            page: 0,
        };
        trail.record(&PageAddress::of(first));
        trail
    }

    fn record(&mut self, address: &PageAddress) {
        self.addresses.insert(address.key);
        self.tokens.extend(address.token);
        if let Some(number) = address.number {
            self.page = number;
        }
    }

    /// Accepts `next`, the page after the `pages` read so far, or says why it is one of
    /// them again.
    fn follow(&mut self, next: &str, pages: u64) -> Result<(), String> {
        let address = PageAddress::of(next);
        let seen = if self.addresses.contains(&address.key) {
            Some("the address of an earlier page".to_string())
        } else if address
            .token
            .is_some_and(|token| self.tokens.contains(&token))
        {
            Some("the page token of an earlier page".to_string())
        } else {
            match address.number {
                Some(number) if number <= self.page => {
                    Some(format!("page {number}, after page {}", self.page))
                }
                _ => None,
            }
        };
        match seen {
            Some(what) => Err(format!(
                "the API's list of SIMs went round in a circle: after {pages} page{} it named \
                 as the next page one read before ({what}: {next}); stopped so no SIM is listed \
                 twice. The account is not at fault: run again later, and if it happens \
                 again, check any proxy between here and the API",
                if pages == 1 { "" } else { "s" }
            )),
            None => {
                self.record(&address);
                Ok(())
            }
        }
    }
}

/// The fields of a SIM in [`EXPORT_COLUMNS`] order; an absent value is an empty cell.
pub(crate) fn export_fields(sim: &ListedSim) -> [&str; 8] {
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

#[cfg(test)]
mod tests {
    use super::PageTrail;

    #[test]
    fn the_first_page_is_page_zero_however_it_is_spelled() {
        let mut trail = PageTrail::starting_at("/v1/Sims?PageSize=5");
        trail.follow("/v1/Sims?PageSize=5&Page=1", 1).unwrap();
        let error = trail.follow("/v1/Sims?Page=0&PageSize=5", 2).unwrap_err();
        assert!(error.contains("the address of an earlier page"), "{error}");
    }

    #[test]
    fn tokens_and_page_numbers_each_catch_a_cycle() {
        let mut trail = PageTrail::starting_at("/v1/Sims?PageSize=1");
        trail
            .follow("/v1/Sims?PageSize=1&Page=1&PageToken=PA1", 1)
            .unwrap();
        let error = trail
            .follow("/v1/Sims?PageSize=1&Page=2&PageToken=PA1", 2)
            .unwrap_err();
        assert!(
            error.contains("the page token of an earlier page"),
            "{error}"
        );
        let error = trail
            .follow("/v1/Sims?PageSize=1&Page=1&PageToken=PA2", 2)
            .unwrap_err();
        assert!(error.contains("page 1, after page 1"), "{error}");
        // A page whose number cannot be read is judged by its address and token alone.
        trail
            .follow("/v1/Sims?PageSize=1&Page=x&PageToken=PA3", 2)
            .unwrap();
        trail
            .follow("/v1/Sims?PageSize=1&Page=2&PageToken=PA4", 3)
            .unwrap();
    }
}
