//! The SIMs a listing has shown so far, by SID, so each is handed on once however often
//! pages show it, and so a listing that keeps going without showing anything new is
//! stopped. Pages whose addresses never repeat (a page number one on, a fresh page token)
//! can still show the same SIMs for ever: only the SIMs tell that such a listing goes
//! nowhere.
//!
//! The rule: [`PAGES_WITHOUT_A_NEW_SIM`] pages in a row that show no SIM not listed before
//! (empty pages included) while naming a next page stop the listing. One such page alone
//! can be honest (a SIM added to the front of an offset-paged list pushes the page before's
//! last SIM onto the next page, which at `--page-size 1` is all it shows); three in a row
//! are not. A SID is kept as its 128 bits, not a hash of it, so no two SIMs are ever taken
//! for one: at most 36 bytes a SIM in memory (16 and the hash table's room), some 36 MB
//! for a million.

use std::collections::HashSet;

use crate::results::pack_sid;

/// Pages in a row without a SIM not listed before, each naming a next page, that stop a
/// listing.
pub(super) const PAGES_WITHOUT_A_NEW_SIM: u32 = 3;

/// The SIDs listed so far, and how the latest pages added to them.
#[derive(Default)]
pub(super) struct SimsSeen {
    sids: HashSet<[u8; 16]>,
    /// Pages in a row, up to the latest, that showed no SID not in `sids` before.
    pages_without_a_new_sim: u32,
    /// SIMs shown again after their first time, for the log.
    shown_again: u64,
}

impl SimsSeen {
    /// True the first time the SIM with `sid` (`HS` and 32 hex digits) is shown; false when
    /// it was listed before. A `sid` that is not one is refused, with a sentence: such a SIM
    /// could not be told from one listed before, and pages of them would seem new for ever.
    pub(super) fn first_sight(&mut self, sid: &str) -> Result<bool, String> {
        let Some(bits) = pack_sid(sid) else {
            return Err(
                "the API listed a SIM whose `sid` is not HS and 32 hex digits, as no Super SIM's \
                 is: this is not the Super SIM API's list. Check --base-url or \
                 SUPERSIM_BASE_URL (it should be https://supersim.twilio.com) and any proxy \
                 between here and the API"
                    .to_string(),
            );
        };
        let first = self.sids.insert(bits);
        if !first {
            self.shown_again += 1;
        }
        Ok(first)
    }

    /// Notes the end of a page that showed `new` SIMs not listed before; when it names a
    /// next page, says why the listing must stop, if it must, as a sentence.
    pub(super) fn end_of_page(
        &mut self,
        new: usize,
        names_a_next_page: bool,
        pages: u64,
    ) -> Result<(), String> {
        if new > 0 {
            self.pages_without_a_new_sim = 0;
            return Ok(());
        }
        self.pages_without_a_new_sim += 1;
        if names_a_next_page && self.pages_without_a_new_sim >= PAGES_WITHOUT_A_NEW_SIM {
            return Err(format!(
                "the API's list of SIMs kept going without moving on: {PAGES_WITHOUT_A_NEW_SIM} \
                 pages in a row without a SIM not listed before, each naming a next page \
                 ({pages} pages read, {} listed); stopped, as it might never end. The \
                 account is not at fault: run again later, and if it happens again, check any \
                 proxy between here and the API",
                match self.sids.len() {
                    1 => "1 SIM".to_string(),
                    sims => format!("{sims} SIMs"),
                }
            ));
        }
        Ok(())
    }

    /// SIMs shown again after their first time (and not handed on again).
    pub(super) fn shown_again(&self) -> u64 {
        self.shown_again
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "HS0123456789abcdef0123456789abcdef";
    const B: &str = "HS0123456789abcdef0123456789abcde0";

    #[test]
    fn a_sid_is_new_once_whatever_its_case() {
        let mut seen = SimsSeen::default();
        assert_eq!(seen.first_sight(A), Ok(true));
        assert_eq!(seen.first_sight(B), Ok(true));
        assert_eq!(seen.first_sight(&A.to_ascii_uppercase()), Ok(false));
        assert_eq!(seen.first_sight(A), Ok(false));
        assert_eq!(seen.shown_again(), 2);
    }

    /// A SIM without a SID that is one could not be told from one listed before: pages of
    /// such SIMs would seem new for ever.
    #[test]
    fn a_sid_that_is_not_one_is_refused() {
        let mut seen = SimsSeen::default();
        for sid in [
            "",
            "HS123",
            "HSzz23456789abcdef0123456789abcdef",
            "XX0123456789abcdef0123456789abcdef",
            "HS+123456789abcdef0123456789abcdef",
        ] {
            let error = seen.first_sight(sid).unwrap_err();
            assert!(error.contains("not HS and 32 hex digits"), "{error}");
        }
    }

    #[test]
    fn three_pages_in_a_row_without_a_new_sim_stop_a_listing_that_goes_on() {
        let mut seen = SimsSeen::default();
        seen.end_of_page(2, true, 1).unwrap();
        seen.end_of_page(0, true, 2).unwrap();
        seen.end_of_page(0, true, 3).unwrap();
        // A new SIM starts the count again.
        seen.end_of_page(1, true, 4).unwrap();
        seen.end_of_page(0, true, 5).unwrap();
        seen.end_of_page(0, true, 6).unwrap();
        let error = seen.end_of_page(0, true, 7).unwrap_err();
        assert!(error.contains("3 pages in a row"), "{error}");
        assert!(error.contains("7 pages read"), "{error}");
    }

    #[test]
    fn a_last_page_without_a_new_sim_ends_the_listing_as_usual() {
        let mut seen = SimsSeen::default();
        seen.end_of_page(0, true, 1).unwrap();
        seen.end_of_page(0, true, 2).unwrap();
        seen.end_of_page(0, false, 3).unwrap();
    }
}
