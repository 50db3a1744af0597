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
//! `next_page_url` are the bound it gives; where every address is new, the SIMs are
//! ([`seen`]: each SIM is handed on once, by SID, and pages that keep coming without a new
//! one stop the listing). Every SIM must be the run's account's ([`account`]).

mod account;
mod seen;

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::api::client::next_page_path;
use crate::api::gate::{Gate, Halt};
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
    /// No request got an answer: the sentence says why, naming the URL.
    Unreachable(String),
    /// An answer said the URL is not the API's: the sentence names it and the likely fix.
    WrongEndpoint(String),
    /// A page named as its next one an address outside the SIM list, which is not
    /// followed: the sentence names it.
    NextPageElsewhere(String),
    /// A page showed a SIM of another account than the run's: the sentence names both.
    AnotherAccount(String),
    /// A page showed something no Super SIM list does (a SIM without a SID): the sentence
    /// says what.
    NotTheSimList(String),
    /// The API named a page read before as the next one: the sentence says which.
    Cycle(String),
    /// Pages kept coming without a SIM not listed before: the sentence says how many.
    NoNewSims(String),
    /// What was done with a SIM failed (a write, a spool).
    Other(anyhow::Error),
}

impl ListError {
    /// Prints the error for a person and returns the exit code.
    pub(crate) fn report(self, target: &Target) -> u8 {
        self.report_saying(target, None)
    }

    /// [`ListError::report`], the sentence of a listing given up led by `consequence`
    /// (what the command did not do for want of the whole list).
    pub(crate) fn report_saying(self, target: &Target, consequence: Option<&str>) -> u8 {
        let (sentence, code) = match self {
            ListError::Interrupted => (
                "interrupted before the last page".to_string(),
                exit::INTERRUPTED,
            ),
            ListError::CredentialsRefused(refusal) => (
                format!(
                    "the API refused the credentials ({refusal}); check {}",
                    super::connect::credentials_source(target)
                ),
                exit::USAGE_OR_CONFIG,
            ),
            ListError::Api(error) => (
                format!("cannot list the account's SIMs: {error}"),
                exit::USAGE_OR_CONFIG,
            ),
            ListError::Cycle(sentence)
            | ListError::NoNewSims(sentence)
            | ListError::Unreachable(sentence) => (sentence, exit::TEMPORARY_FAILURE),
            ListError::WrongEndpoint(sentence)
            | ListError::NextPageElsewhere(sentence)
            | ListError::AnotherAccount(sentence)
            | ListError::NotTheSimList(sentence) => (sentence, exit::USAGE_OR_CONFIG),
            // Not about the listing: a file or a write of this command's own.
            ListError::Other(error) => {
                crate::logs::error(format_args!("{error:#}"));
                return exit::USAGE_OR_CONFIG;
            }
        };
        match consequence {
            Some(consequence) => crate::logs::error(format_args!("{consequence}: {sentence}")),
            None => crate::logs::error(sentence),
        }
        code
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
    let mut seen = seen::SimsSeen::default();
    let mut whose = account::ListedAccount::of_the_run(gate.client().account());
    let mut pages = 0u64;
    loop {
        let page = gate
            .read_with_retries(pages, || gate.client().list_sims_page(&path, filter))
            .await;
        let page = match page {
            Ok(page) => page,
            Err(Some(error)) => return Err(ListError::Api(error)),
            // No answer to judge: the run was stopped, by a person or by the API side.
            // Refused credentials are told whatever came first: they are what to fix.
            Err(None) => {
                return Err(match (gate.refusal(), gate.halt_reason()) {
                    (Some(refusal), _) | (_, Some(Halt::CredentialsRefused(refusal))) => {
                        ListError::CredentialsRefused(refusal)
                    }
                    (None, Some(Halt::Unreachable(sentence))) => ListError::Unreachable(sentence),
                    (None, Some(Halt::WrongEndpoint(sentence))) => {
                        ListError::WrongEndpoint(sentence)
                    }
                    (None, None) => ListError::Interrupted,
                });
            }
        };
        pages += 1;
        tracing::debug!(page = pages, sims = page.sims.len(), "read a page of SIMs");
        let mut new = 0;
        for sim in page.sims {
            let sid = sim.sid.as_deref().unwrap_or_default();
            let first_sight = seen.first_sight(sid).map_err(ListError::NotTheSimList)?;
            whose
                .check(sim.account_sid.as_deref(), sid)
                .map_err(ListError::AnotherAccount)?;
            // A SIM shown again (a server whose pages overlap) is listed once.
            if first_sight {
                new += 1;
                each(sim).map_err(ListError::Other)?;
            }
        }
        let next =
            match page.next_page_url {
                Some(url) => Some(next_page_path(&url).ok_or_else(|| {
                    ListError::NextPageElsewhere(next_page_elsewhere(&url, pages))
                })?),
                None => None,
            };
        seen.end_of_page(new, next.is_some(), pages)
            .map_err(ListError::NoNewSims)?;
        match next {
            Some(next) => {
                trail.follow(&next, pages).map_err(ListError::Cycle)?;
                path = next;
            }
            None => {
                if seen.shown_again() > 0 {
                    tracing::warn!(
                        shown_again = seen.shown_again(),
                        "{} SIM{} shown again on later pages of the API's list; each is \
                         listed once",
                        seen.shown_again(),
                        if seen.shown_again() == 1 {
                            " was"
                        } else {
                            "s were"
                        }
                    );
                }
                return Ok(pages);
            }
        }
    }
}

/// Why a `next_page_url` outside the SIM list is not followed, as a sentence naming it (its
/// user name and password left out, and no more than 300 characters of it).
fn next_page_elsewhere(url: &str, pages: u64) -> String {
    let shown = match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_string(),
    };
    let mut shown: String = shown.escape_debug().collect();
    if shown.chars().count() > 300 {
        shown = shown.chars().take(300).chain("...".chars()).collect();
    }
    format!(
        "page {pages} of the API's list of SIMs named as its next page {shown}, which is not \
         a page of the SIM list (/v1/Sims): nothing was sent there. This is not the Super \
         SIM API's paging: check --base-url or SUPERSIM_BASE_URL (it should be \
         https://supersim.twilio.com) and any proxy between here and the API"
    )
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
