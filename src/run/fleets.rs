//! Fleets resolved up front: every distinct Fleet named by `--fleet` or by a `fleet` cell is
//! fetched once (`GET /v1/Fleets/{Sid or unique name}`) before any SIM is registered, so a
//! typo is found before thousands of SIMs are registered, not as an `update_failed` on each.
//!
//! An unknown Fleet named by `--fleet` stops the run (exit 2); one named by `fleet` cells
//! makes those rows `invalid`, never sent. Either way the reason lists the Fleets the account
//! has (`GET /v1/Fleets`, the first [`LISTED`]). The update step then sends the resolved SID,
//! so whether a SIM is already in the Fleet is an exact comparison.

use std::collections::{BTreeSet, HashMap};

use crate::api::gate::{Gate, Halt};
use crate::api::{ApiError, ErrorClass, SimUpdate};
use crate::run::registration::wrong_endpoint_sentence;

/// Distinct Fleets a run may name; more stops the run before anything is sent (each is one
/// request, and the names are held in memory).
pub(crate) const MAX_DISTINCT_FLEETS: usize = 1000;

/// Fleets named in a reason when a Fleet is not on the account.
pub(crate) const LISTED: usize = 20;

/// Each Fleet named by the run, as resolved before the first registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResolvedFleets {
    /// Name as written (SID or unique name) → the Fleet's SID.
    sids: HashMap<String, String>,
    /// Name as written → why rows naming it are invalid.
    unknown: HashMap<String, String>,
}

impl ResolvedFleets {
    /// Puts the resolved SID in `plan` in place of the name the row gave. `Err` is the
    /// reason the row is invalid: its Fleet is not on the account. A name that was not
    /// resolved (none was asked for) is left as it is.
    pub(crate) fn apply(&self, plan: &mut SimUpdate) -> Result<(), String> {
        let Some(name) = plan.fleet.as_deref() else {
            return Ok(());
        };
        if let Some(reason) = self.unknown.get(name) {
            return Err(reason.clone());
        }
        if let Some(sid) = self.sids.get(name) {
            plan.fleet = Some(sid.clone());
        }
        Ok(())
    }

    /// Fleets named by the run that are not on the account.
    pub(crate) fn unknown(&self) -> usize {
        self.unknown.len()
    }
}

/// Why the Fleets could not be resolved, so the run stops before registering anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FleetStop {
    /// A set-up mistake (exit 2): the sentence says which and what to do.
    Setup(String),
    /// The Fleet lookups kept failing on transient errors (exit 75).
    Unavailable(String),
    /// The run was interrupted, or the gate halted it (see [`Gate::halt_reason`]).
    Halted,
}

/// Resolves the Fleet named by `--fleet` (`flag`) and those named in `fleet` cells
/// (`cells`; `too_many` when there were more than [`MAX_DISTINCT_FLEETS`]).
pub(crate) async fn resolve(
    gate: &Gate,
    flag: Option<&str>,
    cells: &BTreeSet<String>,
    too_many: bool,
) -> Result<ResolvedFleets, FleetStop> {
    if too_many {
        return Err(FleetStop::Setup(format!(
            "the fleet column names more than {MAX_DISTINCT_FLEETS} distinct Fleets; a typo \
             in a column this varied would go unnoticed, so nothing was sent: check the \
             column, or split the file so each part names at most {MAX_DISTINCT_FLEETS}"
        )));
    }
    let mut resolved = ResolvedFleets::default();
    let mut missing = Vec::new();
    let names = flag.into_iter().chain(cells.iter().map(String::as_str));
    for (n, name) in names.enumerate() {
        if resolved.sids.contains_key(name) || missing.iter().any(|m| m == name) {
            continue;
        }
        let client = gate.client();
        let fetched = gate
            .read_with_retries(0xf1ee_7000 ^ n as u64, || client.fetch_fleet(name))
            .await;
        match fetched {
            Ok(fleet) => {
                let sid = fleet.sid.unwrap_or_default();
                tracing::debug!(fleet = name, %sid, "Fleet resolved");
                resolved.sids.insert(name.to_string(), sid);
            }
            Err(None) => return Err(FleetStop::Halted),
            Err(Some(error)) => {
                let url = client.url(&format!("/v1/Fleets/{name}"));
                match judge(&error) {
                    Lookup::NotOnAccount => missing.push(name.to_string()),
                    Lookup::WrongEndpoint => {
                        gate.halt(Halt::WrongEndpoint(wrong_endpoint_sentence(
                            &url, "GET", &error,
                        )));
                        return Err(FleetStop::Halted);
                    }
                    Lookup::Transient => {
                        return Err(FleetStop::Unavailable(format!(
                            "cannot look up Fleet '{name}' at {url}: {error}; nothing was \
                             registered: run again later"
                        )));
                    }
                    Lookup::Refused => {
                        return Err(FleetStop::Setup(format!(
                            "cannot look up Fleet '{name}' at {url}: {error}; nothing was \
                             registered"
                        )));
                    }
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(resolved);
    }
    let names = account_fleets(gate).await?;
    let has = names.as_deref().map_or_else(
        || "its Fleets could not be listed".to_string(),
        |names| describe_fleets(names.to_vec()),
    );
    for name in missing {
        let close = names.as_deref().and_then(|names| closest(&name, names));
        let reason = format!("Fleet '{name}' is not on this account ({has})");
        if flag == Some(name.as_str()) {
            let fix = close.map_or_else(
                || "Pass the SID (HF...) or the unique name of a Fleet on the account".to_string(),
                |close| format!("Did you mean --fleet {close}?"),
            );
            return Err(FleetStop::Setup(format!(
                "--fleet: {reason}; nothing was registered. {fix}"
            )));
        }
        let reason = match close {
            Some(close) => format!("{reason}; did you mean '{close}'?"),
            None => reason,
        };
        resolved.unknown.insert(name, reason);
    }
    Ok(resolved)
}

/// What a failed Fleet lookup means.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// 404 with a Twilio error (20404): no such Fleet on the account.
    NotOnAccount,
    /// A 404 without a Twilio error, a 405, or another bare 4xx: not the API.
    WrongEndpoint,
    /// Transient failures outlasted the attempts.
    Transient,
    /// Any other refusal (a permission, say).
    Refused,
}

fn judge(error: &ApiError) -> Lookup {
    if error.http_status == Some(404) && error.code.is_some() {
        Lookup::NotOnAccount
    } else if error.is_wrong_endpoint() {
        Lookup::WrongEndpoint
    } else if matches!(error.classify(), ErrorClass::Retry { .. }) {
        Lookup::Transient
    } else {
        Lookup::Refused
    }
}

/// The unique names (or SIDs) of the account's first [`LISTED`] + 1 Fleets; `None` when
/// they could not be listed.
async fn account_fleets(gate: &Gate) -> Result<Option<Vec<String>>, FleetStop> {
    let client = gate.client();
    let listed = gate
        .read_with_retries(0xf1ee_7001, || client.list_fleets(LISTED + 1))
        .await;
    let fleets = match listed {
        Ok(fleets) => fleets,
        Err(None) => return Err(FleetStop::Halted),
        Err(Some(error)) => {
            tracing::warn!(%error, "cannot list the account's Fleets");
            return Ok(None);
        }
    };
    Ok(Some(
        fleets
            .into_iter()
            .filter_map(|fleet| fleet.unique_name.or(fleet.sid))
            .collect(),
    ))
}

/// The Fleet name among `names` that `typed` most likely meant: the nearest by edit
/// distance, when it is near enough to be a typo (a third of the name, at least 2 edits)
/// and no other name is as near.
fn closest<'a>(typed: &str, names: &'a [String]) -> Option<&'a str> {
    let near_enough = (typed.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = names
        .iter()
        .map(|name| {
            let distance = strsim::levenshtein(&typed.to_lowercase(), &name.to_lowercase());
            (distance, name.as_str())
        })
        .filter(|&(distance, _)| distance <= near_enough)
        .collect();
    scored.sort();
    match scored.as_slice() {
        [(best, name), rest @ ..] if rest.first().is_none_or(|(next, _)| next > best) => Some(name),
        _ => None,
    }
}

fn describe_fleets(names: Vec<String>) -> String {
    if names.is_empty() {
        return "it has no Fleets".to_string();
    }
    let more = names.len() > LISTED;
    let shown: Vec<&str> = names.iter().take(LISTED).map(String::as_str).collect();
    format!(
        "it has: {}{}",
        shown.join(", "),
        if more { ", and more" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: &str = "HF0123456789abcdef0123456789abcdef";

    fn error(status: u16, code: Option<u32>) -> ApiError {
        ApiError::answer(Some(status), code)
    }

    #[test]
    fn a_fleet_name_one_typo_away_is_suggested_and_a_far_or_tied_one_is_not() {
        let names: Vec<String> = ["field-devices", "bench", "trackers-eu", "trackers-us"]
            .map(String::from)
            .to_vec();
        assert_eq!(closest("feild-devices", &names), Some("field-devices"));
        assert_eq!(closest("bnech", &names), Some("bench"));
        assert_eq!(closest("Bench", &names), Some("bench"));
        assert_eq!(closest("trackers-eu", &names), Some("trackers-eu"));
        // As near to both: no guess.
        assert_eq!(closest("trackers-xx", &names), None);
        assert_eq!(closest("spares", &names), None);
        assert_eq!(closest("x", &[]), None);
    }

    #[test]
    fn lookup_answers() {
        assert_eq!(judge(&error(404, Some(20404))), Lookup::NotOnAccount);
        assert_eq!(judge(&error(404, None)), Lookup::WrongEndpoint);
        assert_eq!(judge(&error(405, None)), Lookup::WrongEndpoint);
        assert_eq!(judge(&error(503, Some(20503))), Lookup::Transient);
        assert_eq!(judge(&error(403, Some(20403))), Lookup::Refused);
    }

    #[test]
    fn the_plan_gets_the_sid_or_the_row_the_reason() {
        let mut fleets = ResolvedFleets::default();
        fleets.sids.insert("bench".into(), FLEET.into());
        fleets.unknown.insert(
            "bnech".into(),
            "Fleet 'bnech' is not on this account".into(),
        );
        let mut plan = SimUpdate {
            fleet: Some("bench".into()),
            ..SimUpdate::default()
        };
        fleets.apply(&mut plan).unwrap();
        assert_eq!(plan.fleet.as_deref(), Some(FLEET));
        let mut typo = SimUpdate {
            fleet: Some("bnech".into()),
            ..SimUpdate::default()
        };
        assert!(fleets.apply(&mut typo).unwrap_err().contains("'bnech'"));
        let mut none = SimUpdate::default();
        fleets.apply(&mut none).unwrap();
        assert_eq!(none, SimUpdate::default());
    }

    #[test]
    fn the_account_fleets_are_listed_up_to_the_limit() {
        assert_eq!(describe_fleets(vec![]), "it has no Fleets");
        assert_eq!(
            describe_fleets(vec!["a".into(), "b".into()]),
            "it has: a, b"
        );
        let many: Vec<String> = (0..=LISTED).map(|n| format!("f{n}")).collect();
        let text = describe_fleets(many);
        assert!(
            text.ends_with(&format!("f{}, and more", LISTED - 1)),
            "{text}"
        );
    }
}
