//! The account a run registers on, proved once: shared by the run and `--dry-run`. The
//! preflight learns the account the credentials belong to (an API key names none), and a
//! results file written against another account is refused before anything is sent.

use crate::api::Client;
use crate::api::preflight::{PreflightError, preflight};
use crate::run::error::RunError;

/// Refuses to resume a results file written against another account than `account`.
pub(crate) fn check_account(
    results: &str,
    account: Option<&str>,
    earlier: &[String],
) -> Result<(), RunError> {
    match (
        account,
        earlier.iter().find(|a| Some(a.as_str()) != account),
    ) {
        (Some(account), Some(other)) => Err(RunError::OtherAccount {
            results: results.to_string(),
            written_on: other.clone(),
            this_run: account.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Runs the preflight and returns the account this run registers on: the one the API
/// shows, else the one the credentials name. A mismatch between the two is a set-up error.
pub(crate) async fn proven_account(
    client: &Client,
    said: Option<&str>,
) -> Result<Option<String>, RunError> {
    match preflight(client).await {
        Ok(proven) => match (proven.account_sid, said) {
            (Some(learned), Some(said)) if learned != said => {
                Err(RunError::Setup(anyhow::anyhow!(
                    "the credentials belong to account {learned}, but TWILIO_ACCOUNT_SID says \
                 {said}; set TWILIO_ACCOUNT_SID to the account of TWILIO_API_KEY"
                )))
            }
            (learned, said) => Ok(learned.or_else(|| said.map(String::from))),
        },
        Err(PreflightError::CredentialsRefused(refusal)) => {
            Err(RunError::CredentialsRefused(refusal))
        }
        Err(PreflightError::Setup(message)) => Err(RunError::Setup(anyhow::anyhow!(message))),
        Err(PreflightError::Unreachable(message)) => Err(RunError::Unreachable(message)),
    }
}

/// The preflight of a run, done once, just before the run's first request or first row
/// written: a rerun over a finished file sends nothing at all, a run with work proves the
/// base URL, the credentials and the network before anything is registered, and every
/// row the run writes carries the account it proved.
pub(crate) struct Preflight {
    /// The account the credentials name, if they do.
    pub(crate) said: Option<String>,
    pub(crate) earlier_accounts: Vec<String>,
    /// The results file, for messages.
    pub(crate) results: String,
    pub(crate) done: bool,
}

impl Preflight {
    /// Proves the account, the first time only: `Some(account)` then (the account may
    /// still be unknown), `None` on later calls.
    pub(crate) async fn prove(
        &mut self,
        client: &Client,
    ) -> Result<Option<Option<String>>, RunError> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(None);
        }
        let account = proven_account(client, self.said.as_deref()).await?;
        // Answers count only when they show the run's account.
        client.know_account(account.as_deref());
        check_account(&self.results, account.as_deref(), &self.earlier_accounts)?;
        Ok(Some(account))
    }
}
