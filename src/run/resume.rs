//! What onboarding asks of each SIM, decided without I/O: the Fleet, status and UniqueName
//! wanted for a row ([`OnboardConfig`]), and where a row starts given what an earlier run
//! recorded for its ICCID ([`resume`]): skip it, update it, or register it.

use std::time::Duration;

use anyhow::bail;

use crate::api::{SimUpdate, TargetStatus};
use crate::results::{Outcome, PriorSim, SimStatus};

/// What the run does after registering each SIM.
#[derive(Debug, Clone, Default)]
pub(crate) struct OnboardConfig {
    /// `--fleet`: a Fleet SID or unique name, for rows whose `fleet` cell is empty.
    pub(crate) fleet: Option<String>,
    /// `--status` / `--activate`.
    pub(crate) status: Option<TargetStatus>,
    /// `--wait`: poll a `scheduled` SIM until its change is done.
    pub(crate) wait: bool,
    /// `--wait-timeout`: the longest wait for one SIM.
    pub(crate) wait_timeout: Duration,
}

impl OnboardConfig {
    /// Refuses activation that no row could satisfy, before any request is sent: `active`
    /// needs a Fleet, from `--fleet` or from a `fleet` column of the input.
    pub(crate) fn check_fleet_source(
        &self,
        has_fleet_column: bool,
        input: &str,
    ) -> anyhow::Result<()> {
        if self.status == Some(TargetStatus::Active) && self.fleet.is_none() && !has_fleet_column {
            bail!(
                "cannot activate SIMs without a Fleet: Twilio refuses `active` for a SIM in no \
                 Fleet (error 83007); pass --fleet HF...|unique-name, or add a `fleet` column \
                 to {input}"
            );
        }
        Ok(())
    }

    /// `--wait-timeout` when `--wait` is on.
    pub(crate) fn wait_limit(&self) -> Option<Duration> {
        self.wait.then_some(self.wait_timeout)
    }

    /// The update one input row asks for: its `fleet` cell wins over `--fleet`. `Err` is the
    /// reason the row is invalid (activation without any Fleet).
    pub(crate) fn plan_for(
        &self,
        fleet_cell: Option<String>,
        unique_name: Option<String>,
    ) -> Result<SimUpdate, String> {
        let fleet = fleet_cell.or_else(|| self.fleet.clone());
        if self.status == Some(TargetStatus::Active) && fleet.is_none() {
            return Err(
                "activation needs a Fleet: fill in this row's fleet cell or pass --fleet"
                    .to_string(),
            );
        }
        Ok(SimUpdate {
            fleet,
            status: self.status.map(|s| s.as_str().to_string()),
            unique_name,
        })
    }
}

pub(crate) use crate::api::is_fleet_sid;

/// Where a row starts, given what an earlier run recorded for its ICCID.
#[derive(Debug, PartialEq)]
pub(crate) enum Resume {
    /// Nothing left to do: count the earlier outcome, send nothing.
    Skip(Outcome),
    /// Registered earlier: go straight to the update step with this SID.
    Update(PriorSim),
    /// Not registered (or not known to be): start with registration.
    Register,
}

/// Decides per step, without I/O, what a row still needs. `plan` is the update as the input
/// and the flags name it; `fleet_sid` is its Fleet's SID once the Fleets are resolved;
/// `code` is [`crate::results::code_fingerprint`] of the code on the row now.
pub(crate) fn resume(
    prior: Option<PriorSim>,
    plan: &SimUpdate,
    fleet_sid: Option<&str>,
    code: Option<u32>,
    retry_rejected: bool,
) -> Resume {
    let Some(prior) = prior else {
        return Resume::Register;
    };
    if prior.outcome.is_done() && prior.sid.is_none() {
        // A claim of success without a SID (a hand-edited row, an 83003 whose lookup
        // failed) proves nothing: the SIM is in doubt, looked up by its ICCID and
        // registered if the account does not have it, never skipped as done.
        return Resume::Update(prior);
    }
    let registered = prior.outcome.is_done()
        || (prior.sid.is_some()
            && matches!(prior.outcome, Outcome::GaveUp | Outcome::UpdateFailed));
    if !registered {
        // A refusal is final for the code it was given; a fixed code is sent again, as a
        // refused update asked for something else is (below).
        let same_code = prior.code_fingerprint.is_none() || prior.code_fingerprint == code;
        return match prior.outcome {
            Outcome::Rejected if !retry_rejected && same_code => Resume::Skip(Outcome::Rejected),
            _ => Resume::Register,
        };
    }
    if prior.outcome.is_done() && recorded_state_satisfies(&prior, plan, fleet_sid) {
        return Resume::Skip(prior.outcome);
    }
    if prior.outcome == Outcome::UpdateFailed && plan.is_empty() {
        // The update is no longer asked for; the refusal stays on record.
        return Resume::Skip(Outcome::UpdateFailed);
    }
    if prior.outcome == Outcome::UpdateFailed
        && !retry_rejected
        && prior.request_key
            == crate::results::request_key(&requested_text(plan).unwrap_or_default())
    {
        // Refused for good, and asked again for the same: it would be refused again, and
        // an hourly cron run would append another row every hour.
        return Resume::Skip(Outcome::UpdateFailed);
    }
    Resume::Update(prior)
}

/// True when the last row already shows what `plan` asks for. A UniqueName is not in the
/// results, so it counts as applied once a final (not checkpoint) row was written. A Fleet
/// is compared by SID: the one given, or the one its unique name resolved to. Before the
/// Fleets are resolved, a Fleet given by unique name counts as applied only when the row
/// shows a Fleet and recorded this very request (the same name), so a run naming another
/// Fleet resolves it and moves the SIM, and a rerun of the same command sends nothing.
fn recorded_state_satisfies(prior: &PriorSim, plan: &SimUpdate, fleet_sid: Option<&str>) -> bool {
    if plan.is_empty() {
        return true;
    }
    if prior.pending {
        return false;
    }
    let status_ok = plan
        .status
        .as_deref()
        .is_none_or(|wanted| SimStatus::parse(wanted) == prior.status);
    let same_request = || {
        prior.request_key == crate::results::request_key(&requested_text(plan).unwrap_or_default())
    };
    let fleet_ok = match (plan.fleet.as_deref(), fleet_sid) {
        (None, _) => true,
        (Some(wanted), _) if is_fleet_sid(wanted) => prior
            .fleet_sid
            .as_deref()
            .is_some_and(|have| have.eq_ignore_ascii_case(wanted)),
        (Some(_), Some(resolved)) => prior
            .fleet_sid
            .as_deref()
            .is_some_and(|have| have.eq_ignore_ascii_case(resolved)),
        (Some(_), None) => prior.fleet_sid.is_some() && same_request(),
    };
    status_ok && fleet_ok
}

/// The update a run asks of a SIM, as the results' `update_requested` cell says it:
/// `fleet=...;status=...;unique_name=...`, only the fields asked for; `None` for none.
pub(crate) fn requested_text(plan: &SimUpdate) -> Option<String> {
    let parts: Vec<String> = [
        ("fleet", &plan.fleet),
        ("status", &plan.status),
        ("unique_name", &plan.unique_name),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={v}")))
    .collect();
    (!parts.is_empty()).then(|| parts.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "HS0123456789abcdef0123456789abcdef";
    const FLEET: &str = "HF0123456789abcdef0123456789abcdef";

    fn config(fleet: Option<&str>, status: Option<TargetStatus>) -> OnboardConfig {
        OnboardConfig {
            fleet: fleet.map(String::from),
            status,
            ..OnboardConfig::default()
        }
    }

    fn prior(outcome: Outcome, status: SimStatus, fleet: Option<&str>) -> PriorSim {
        PriorSim {
            outcome,
            sid: Some(SID.into()),
            status,
            fleet_sid: fleet.map(String::from),
            pending: false,
            error_code: None,
            request_key: 0,
            code_fingerprint: None,
        }
    }

    fn plan(fleet: Option<&str>, status: Option<&str>) -> SimUpdate {
        SimUpdate {
            fleet: fleet.map(String::from),
            status: status.map(String::from),
            unique_name: None,
        }
    }

    #[test]
    fn activation_without_any_fleet_is_refused_before_any_request() {
        let activate = config(None, Some(TargetStatus::Active));
        let err = activate
            .check_fleet_source(false, "box.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--fleet") && err.contains("box.csv"), "{err}");
        assert!(activate.check_fleet_source(true, "box.csv").is_ok());
        assert!(
            config(None, Some(TargetStatus::Ready))
                .check_fleet_source(false, "box.csv")
                .is_ok()
        );
        let err = activate.plan_for(None, None).unwrap_err();
        assert!(err.contains("fleet"), "{err}");
        assert_eq!(
            activate.plan_for(Some("lab".into()), None).unwrap(),
            plan(Some("lab"), Some("active"))
        );
    }

    #[test]
    fn the_fleet_cell_wins_over_the_flag() {
        let with_flag = config(Some("default"), None);
        assert_eq!(
            with_flag.plan_for(Some("lab".into()), None).unwrap().fleet,
            Some("lab".into())
        );
        assert_eq!(
            with_flag.plan_for(None, None).unwrap().fleet,
            Some("default".into())
        );
    }

    #[test]
    fn a_refused_update_is_not_sent_again_unless_the_request_changed() {
        use Outcome::*;
        let asked = plan(Some("field-devices"), Some("active"));
        let mut refused = prior(UpdateFailed, SimStatus::New, None);
        refused.error_code = Some(83010);
        refused.request_key = crate::results::request_key(&requested_text(&asked).unwrap());
        assert_eq!(
            resume(Some(refused.clone()), &asked, None, None, false),
            Resume::Skip(UpdateFailed),
            "the same request would be refused the same way"
        );
        let changed = plan(Some("bench"), Some("active"));
        assert_eq!(
            resume(Some(refused.clone()), &changed, None, None, false),
            Resume::Update(refused.clone())
        );
        assert_eq!(
            resume(Some(refused.clone()), &asked, None, None, true),
            Resume::Update(refused.clone()),
            "--retry-rejected sends it again"
        );
        assert_eq!(
            requested_text(&asked).as_deref(),
            Some("fleet=field-devices;status=active")
        );
        assert_eq!(requested_text(&SimUpdate::default()), None);
    }

    #[test]
    fn resume_per_step() {
        use Outcome::*;
        let active = plan(Some(FLEET), Some("active"));
        assert_eq!(resume(None, &active, None, None, false), Resume::Register);
        let done = prior(Registered, SimStatus::Active, Some(FLEET));
        assert_eq!(
            resume(Some(done.clone()), &active, None, None, false),
            Resume::Skip(Registered)
        );
        let registered_only = prior(Registered, SimStatus::New, None);
        assert_eq!(
            resume(Some(registered_only.clone()), &active, None, None, false),
            Resume::Update(registered_only.clone()),
            "a SIM registered without the update gets only the update"
        );
        assert_eq!(
            resume(
                Some(registered_only),
                &SimUpdate::default(),
                None,
                None,
                false
            ),
            Resume::Skip(Registered)
        );
        let scheduled = prior(Registered, SimStatus::Scheduled, Some(FLEET));
        assert!(matches!(
            resume(Some(scheduled), &active, None, None, false),
            Resume::Update(_)
        ));
        let failed = prior(UpdateFailed, SimStatus::New, None);
        assert!(matches!(
            resume(Some(failed.clone()), &active, None, None, false),
            Resume::Update(_)
        ));
        assert_eq!(
            resume(Some(failed), &SimUpdate::default(), None, None, false),
            Resume::Skip(UpdateFailed)
        );
        let gave_up_updating = prior(GaveUp, SimStatus::New, None);
        assert!(matches!(
            resume(Some(gave_up_updating), &active, None, None, false),
            Resume::Update(_)
        ));
        let mut gave_up_registering = prior(GaveUp, SimStatus::Unknown, None);
        gave_up_registering.sid = None;
        assert_eq!(
            resume(Some(gave_up_registering), &active, None, None, false),
            Resume::Register
        );
        let mut rejected = prior(Rejected, SimStatus::Unknown, None);
        rejected.sid = None;
        assert_eq!(
            resume(Some(rejected.clone()), &active, None, None, false),
            Resume::Skip(Rejected)
        );
        assert_eq!(
            resume(Some(rejected), &active, None, None, true),
            Resume::Register
        );
        let mut checkpoint = prior(Registered, SimStatus::New, None);
        checkpoint.pending = true;
        let named = SimUpdate {
            unique_name: Some("pump-7".into()),
            ..SimUpdate::default()
        };
        assert!(matches!(
            resume(Some(checkpoint), &named, None, None, false),
            Resume::Update(_)
        ));
        let other_fleet = prior(
            Registered,
            SimStatus::Active,
            Some(&FLEET.replace('0', "1")),
        );
        assert!(matches!(
            resume(Some(other_fleet), &active, None, None, false),
            Resume::Update(_)
        ));
    }

    #[test]
    fn a_refusal_is_final_for_its_code_only() {
        let mut refused = prior(Outcome::Rejected, SimStatus::Unknown, None);
        refused.sid = None;
        refused.code_fingerprint = Some(0xabc);
        let plain = SimUpdate::default();
        let skip = Resume::Skip(Outcome::Rejected);
        assert_eq!(
            resume(Some(refused.clone()), &plain, None, Some(0xabc), false),
            skip
        );
        assert_eq!(
            resume(Some(refused.clone()), &plain, None, Some(0xabd), false),
            Resume::Register,
            "the code was fixed"
        );
        assert_eq!(
            resume(Some(refused.clone()), &plain, None, Some(0xabc), true),
            Resume::Register
        );
        // A file from before fingerprints cannot tell: only --retry-rejected sends it.
        refused.code_fingerprint = None;
        assert_eq!(
            resume(Some(refused), &plain, None, Some(0xabd), false),
            skip
        );
    }

    #[test]
    fn a_claimed_success_without_a_sid_is_in_doubt_not_done() {
        use Outcome::*;
        for outcome in [Registered, AlreadyRegistered] {
            let mut claimed = prior(outcome, SimStatus::New, None);
            claimed.sid = None;
            assert_eq!(
                resume(
                    Some(claimed.clone()),
                    &SimUpdate::default(),
                    None,
                    None,
                    false
                ),
                Resume::Update(claimed),
                "{outcome} without a SID is looked up"
            );
        }
    }

    #[test]
    fn a_fleet_by_name_is_compared_by_the_sid_it_resolves_to() {
        use Outcome::*;
        let other = FLEET.replace('0', "1");
        let by_name = plan(Some("field-units"), None);
        let mut placed = prior(Registered, SimStatus::New, Some(FLEET));
        placed.request_key = crate::results::request_key("fleet=field-units");
        assert_eq!(
            resume(Some(placed.clone()), &by_name, Some(FLEET), None, false),
            Resume::Skip(Registered)
        );
        assert_eq!(
            resume(Some(placed.clone()), &by_name, Some(&other), None, false),
            Resume::Update(placed.clone()),
            "the name now means another Fleet"
        );
        assert_eq!(
            resume(Some(placed.clone()), &by_name, None, None, false),
            Resume::Skip(Registered),
            "unresolved, the same request as recorded is done"
        );
        let spares = plan(Some("spares"), None);
        assert!(
            matches!(
                resume(Some(placed), &spares, None, None, false),
                Resume::Update(_)
            ),
            "unresolved, another name is not done: it must be resolved"
        );
    }
}
