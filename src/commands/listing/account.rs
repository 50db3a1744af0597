//! Whose SIMs a listing shows: every SIM must be the run's account's. A page that shows
//! another account's SIM (a proxy answering for another customer, a base URL that is
//! another account's API, an API key beside a `TWILIO_ACCOUNT_SID` that is not its
//! account) says nothing about this account, so the listing stops before that SIM is
//! handed on, rather than export it, or compare it, as this account's.
//!
//! The run's account is the one its credentials name (an auth token's Account SID, or
//! `TWILIO_ACCOUNT_SID` beside an API key); when they name none, the first SIM listed
//! names it, and a SIM of any other account stops the listing all the same.

/// The account a listing's SIMs must belong to.
pub(super) struct ListedAccount {
    /// The account, once known.
    account: Option<String>,
    /// Whether the credentials named it (else the first SIM listed did).
    named_by_credentials: bool,
}

impl ListedAccount {
    /// The SIMs must be `account`'s, when the credentials name one.
    pub(super) fn of_the_run(account: Option<String>) -> ListedAccount {
        ListedAccount {
            named_by_credentials: account.is_some(),
            account,
        }
    }

    /// Accepts a SIM listed as `shown`'s (its `account_sid`), or says why it is not this
    /// listing's, as a sentence naming the SIM by `sid`.
    pub(super) fn check(&mut self, shown: Option<&str>, sid: &str) -> Result<(), String> {
        let Some(shown) = shown.filter(|shown| !shown.is_empty()) else {
            return Err(format!(
                "the API listed a SIM that names no account ({sid}): a Super SIM list names \
                 the account of every SIM; nothing is listed as this account's. Check \
                 --base-url or SUPERSIM_BASE_URL (it should be https://supersim.twilio.com) \
                 and any proxy between here and the API"
            ));
        };
        let expected = match &self.account {
            None => {
                self.account = Some(shown.to_string());
                return Ok(());
            }
            Some(expected) if expected.eq_ignore_ascii_case(shown) => return Ok(()),
            Some(expected) => expected,
        };
        Err(if self.named_by_credentials {
            format!(
                "the API listed a SIM of account {shown} ({sid}), and these credentials are \
                 for account {expected}: stopped rather than list another account's SIMs as \
                 this one's. Check TWILIO_ACCOUNT_SID (beside an API key it must name the \
                 key's own account), --base-url or SUPERSIM_BASE_URL, and any proxy between \
                 here and the API"
            )
        } else {
            format!(
                "the API listed a SIM of account {shown} ({sid}) after SIMs of account \
                 {expected}: stopped rather than list two accounts' SIMs as one's. Set \
                 TWILIO_ACCOUNT_SID to the account meant, and check --base-url or \
                 SUPERSIM_BASE_URL and any proxy between here and the API"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "AC00000000000000000000000000000000";
    const THEIRS: &str = "ACffffffffffffffffffffffffffffffff";
    const SID: &str = "HS0123456789abcdef0123456789abcdef";

    #[test]
    fn the_credentials_account_is_the_only_one_listed() {
        let mut listed = ListedAccount::of_the_run(Some(OURS.into()));
        listed.check(Some(OURS), SID).unwrap();
        let error = listed.check(Some(THEIRS), SID).unwrap_err();
        assert!(
            error.contains(&format!("a SIM of account {THEIRS}")),
            "{error}"
        );
        assert!(error.contains(&format!("for account {OURS}")), "{error}");
        let error = listed.check(None, SID).unwrap_err();
        assert!(error.contains("names no account"), "{error}");
    }

    #[test]
    fn without_an_account_named_the_first_sim_names_it() {
        let mut listed = ListedAccount::of_the_run(None);
        listed.check(Some(THEIRS), SID).unwrap();
        listed.check(Some(THEIRS), SID).unwrap();
        let error = listed.check(Some(OURS), SID).unwrap_err();
        assert!(
            error.contains(&format!("after SIMs of account {THEIRS}")),
            "{error}"
        );
        assert!(error.contains("TWILIO_ACCOUNT_SID"), "{error}");
    }
}
