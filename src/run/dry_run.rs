//! `register --dry-run`: everything a run checks before its first registration (the
//! preflight, the account the results file belongs to, the plan), and what the run would
//! then do, counted, with no create, no update and no results written.

use tokio_util::sync::CancellationToken;

use crate::api::Client;
use crate::api::gate::{Gate, Halt};
use crate::input::screen::Screen;
use crate::results::EarlierRows;
use crate::run::account::{check_account, proven_account};
use crate::run::config::RegisterConfig;
use crate::run::error::RunError;
use crate::run::fleets::{self, FleetStop};
use crate::run::plan::{Plan, Replayable, temp_dir_beside};
use crate::run::triage::{Work, triage};

/// What a run would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DryRun {
    /// The API's base URL, or the emulator's.
    pub(crate) url: String,
    /// The account the run would register on, when known.
    pub(crate) account_sid: Option<String>,
    pub(crate) register: u64,
    /// Registered by an earlier run, with an update step still to do.
    pub(crate) update: u64,
    /// Finished by an earlier run: nothing to send.
    pub(crate) skip: u64,
    pub(crate) invalid: u64,
    pub(crate) duplicate: u64,
    /// SIMs the run would move into each Fleet, by "unique name (SID)" (or the SID given).
    pub(crate) fleets: std::collections::BTreeMap<String, u64>,
    /// SIMs whose status the run would set, by status.
    pub(crate) statuses: std::collections::BTreeMap<String, u64>,
    /// SIMs the run would give a unique name.
    pub(crate) named: u64,
}

impl DryRun {
    /// One paragraph a person reads before the real run.
    pub(crate) fn render(&self) -> String {
        let mut text = format!(
            "dry run against {} (account {}): would register {}, update {}, skip {} finished, \
             {} invalid, {} duplicate\n",
            self.url,
            self.account_sid.as_deref().unwrap_or("not known yet"),
            thousands(self.register),
            thousands(self.update),
            thousands(self.skip),
            thousands(self.invalid),
            thousands(self.duplicate),
        );
        let steps: Vec<String> = self
            .fleets
            .iter()
            .map(|(fleet, n)| format!("{} into Fleet {fleet}", thousands(*n)))
            .chain(
                self.statuses
                    .iter()
                    .map(|(status, n)| format!("{} set {status}", thousands(*n))),
            )
            .chain(
                (self.named > 0).then(|| format!("{} given a unique name", thousands(self.named))),
            )
            .collect();
        if !steps.is_empty() {
            text.push_str(&format!("then: {}\n", steps.join(", ")));
        }
        text.push_str("nothing was sent and no results were written\n");
        text
    }

    /// Counts the steps after registration that `job` asks for.
    fn count_steps(&mut self, job: &crate::run::onboard::Job) {
        if let Some(fleet) = &job.plan.fleet {
            let named = job
                .requested
                .as_deref()
                .and_then(|requested| {
                    requested
                        .split(';')
                        .find_map(|part| part.strip_prefix("fleet="))
                })
                .filter(|name| name != fleet);
            let key = match named {
                Some(name) => format!("{name} ({fleet})"),
                None => fleet.clone(),
            };
            *self.fleets.entry(key).or_default() += 1;
        }
        if let Some(status) = &job.plan.status {
            *self.statuses.entry(status.clone()).or_default() += 1;
        }
        if job.plan.unique_name.is_some() {
            self.named += 1;
        }
    }

    /// As `validate`'s: 1 when rows would not be sent because they are invalid.
    pub(crate) fn exit_code(&self) -> u8 {
        if self.invalid > 0 {
            crate::exit::ROWS_FAILED
        } else {
            crate::exit::SUCCESS
        }
    }
}

/// `1,180` for 1180.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Plans the run `config` describes against `client`, sending nothing but the preflight
/// and the Fleet lookups; `stop` (the signals) ends the lookups early.
pub(crate) async fn dry_run(
    config: &RegisterConfig,
    client: Client,
    stop: CancellationToken,
) -> Result<DryRun, RunError> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => Err(RunError::Interrupted),
        planned = plan_dry_run(config, client, &stop) => planned,
    }
}

async fn plan_dry_run(
    config: &RegisterConfig,
    client: Client,
    stop: &CancellationToken,
) -> Result<DryRun, RunError> {
    let account_sid = proven_account(&client, config.account_sid.as_deref()).await?;
    let url = client.url("");
    let temp_dir = temp_dir_beside(&config.output);
    let input = Replayable::new(&config.input, &temp_dir)?;
    let mut reader = input.open(config.read)?;
    config
        .onboard
        .check_fleet_source(reader.has_fleet_column(), reader.display_name())
        .map_err(RunError::Setup)?;
    let earlier = EarlierRows::read_only(&config.output).map_err(RunError::Setup)?;
    let screen = Screen::new(config.strict);
    let first_pass = input.open(config.read)?;
    let plan_dir = temp_dir.clone();
    let mut plan =
        tokio::task::spawn_blocking(move || Plan::build(first_pass, screen, earlier, &plan_dir))
            .await
            .map_err(|panic| RunError::Setup(anyhow::anyhow!("planning failed: {panic}")))??;
    check_account(
        &config.output.display().to_string(),
        account_sid.as_deref(),
        &plan.earlier_accounts,
    )?;
    // The Fleets are looked up as a run would, so a typo shows now (reads only, within the
    // same limits a run keeps).
    let gate = Gate::new(client, config.limits, stop.clone());
    let fleets = match fleets::resolve(
        &gate,
        config.onboard.fleet.as_deref(),
        &plan.fleet_names,
        plan.too_many_fleets,
        fleets::NOTHING_REGISTERED,
    )
    .await
    {
        Ok(resolved) => resolved,
        Err(FleetStop::Setup(message)) => return Err(RunError::Setup(anyhow::anyhow!(message))),
        Err(FleetStop::Unavailable(message)) => return Err(RunError::Unreachable(message)),
        Err(FleetStop::Halted) => {
            return Err(match gate.halt_reason() {
                Some(Halt::CredentialsRefused(refusal)) => RunError::CredentialsRefused(refusal),
                Some(Halt::Unreachable(why)) => RunError::Unreachable(why),
                Some(Halt::WrongEndpoint(why)) => RunError::Setup(anyhow::anyhow!(why)),
                None if stop.is_cancelled() => RunError::Interrupted,
                None => RunError::Setup(anyhow::anyhow!("the Fleet lookups stopped")),
            });
        }
    };
    let mut counts = DryRun {
        url,
        account_sid,
        ..DryRun::default()
    };
    while let Some(row) = reader.next_row() {
        if stop.is_cancelled() {
            return Err(RunError::Interrupted);
        }
        let row = row?;
        if !plan.covers(row.line) {
            break;
        }
        let facts = plan
            .at(row.line)
            .map_err(|e| RunError::Setup(anyhow::Error::new(e)))?;
        match triage(
            row,
            &facts,
            config.retry_rejected,
            (&config.onboard, &fleets),
            &screen,
        ) {
            Work::Send(job, _, _) => {
                if job.resume.is_some() {
                    counts.update += 1;
                } else {
                    counts.register += 1;
                }
                counts.count_steps(&job);
            }
            Work::Report(row, _, _) if row.outcome == crate::results::Outcome::Duplicate => {
                counts.duplicate += 1
            }
            Work::Report(..) => counts.invalid += 1,
            Work::Skip(..) => counts.skip += 1,
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_a_person_writes_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1180), "1,180");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
