//! Which ICCID each SID in the results file belongs to, so no two rows ever hold one SID for
//! different ICCIDs. A server may answer a create with a SID that is not the SIM's (the same
//! one for every ICCID, say) while the ICCID and the account are right; such a SID, once
//! another ICCID's row holds it, is not credible, and the SIM is settled by a lookup instead
//! (see [`crate::run::registration`]).
//!
//! The ledger starts with the SIDs of the rows kept from earlier runs and takes each SID this
//! run records. It holds 24 bytes per SID (the SID's 16 bytes and the ICCID's exact 64-bit
//! key), about 50 MB for a million SIMs with the map's own room: the one thing a run keeps
//! per SIM in memory, since a clash must be caught before its row is written.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::input::checks::checked_iccid_key;
use crate::results::pack_sid;

/// The SIDs rows hold, each with the ICCID of the first row that held it.
#[derive(Debug, Default)]
pub(crate) struct SidLedger {
    held: Mutex<HashMap<[u8; 16], u64>>,
}

impl SidLedger {
    /// Notes a SID an earlier run recorded for the ICCID with key `iccid_key`. The first row
    /// that held a SID keeps it.
    pub(crate) fn note_earlier(&mut self, sid: [u8; 16], iccid_key: u64) {
        self.held
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .entry(sid)
            .or_insert(iccid_key);
    }

    /// Records that `iccid`'s row holds `sid`, unless another ICCID's row holds it already:
    /// then `Err` with that ICCID. Taking the SID and checking it are one step, so two SIMs
    /// answered with one SID at the same moment cannot both take it. A SID or ICCID that is
    /// not well formed is not kept (the client never lets such a SID through).
    pub(crate) fn claim(&self, sid: &str, iccid: &str) -> Result<(), String> {
        let (Some(sid), Some(key)) = (pack_sid(sid), checked_iccid_key(iccid)) else {
            return Ok(());
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match *held.entry(sid).or_insert(key) {
            holder if holder == key => Ok(()),
            holder => Err(iccid_of_key(holder)),
        }
    }
}

/// The ICCID whose [`checked_iccid_key`] is `key`: `89`, then the rest with its leading
/// zeros (18 digits for a 20-digit ICCID, 17 for a 19-digit one).
pub(crate) fn iccid_of_key(key: u64) -> String {
    let twenty_digits = key >> 63 == 1;
    let rest = key & !(1 << 63);
    let width = if twenty_digits { 18 } else { 17 };
    format!("89{rest:0width$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "HS0123456789abcdef0123456789abcdef";

    #[test]
    fn a_sid_belongs_to_the_first_iccid_that_holds_it() {
        let ledger = SidLedger::default();
        let (first, second) = ("89883070000000000001", "8988307000000000002");
        assert_eq!(ledger.claim(SID, first), Ok(()));
        assert_eq!(ledger.claim(SID, first), Ok(()), "its own SID again");
        assert_eq!(ledger.claim(SID, second), Err(first.to_string()));
        assert_eq!(
            ledger.claim(&SID.to_uppercase(), second),
            Err(first.to_string()),
            "one SID in either case"
        );
        let other = SID.replace('0', "1");
        assert_eq!(ledger.claim(&other, second), Ok(()));
        assert_eq!(ledger.claim(&other, first), Err(second.to_string()));
    }

    #[test]
    fn an_earlier_runs_sid_is_held_for_its_iccid() {
        let iccid = "89883070000000000042";
        let mut ledger = SidLedger::default();
        ledger.note_earlier(pack_sid(SID).unwrap(), checked_iccid_key(iccid).unwrap());
        assert_eq!(ledger.claim(SID, iccid), Ok(()));
        assert_eq!(
            ledger.claim(SID, "89883070000000000043"),
            Err(iccid.to_string())
        );
    }

    #[test]
    fn an_iccid_comes_back_from_its_key_with_its_length() {
        for iccid in [
            "89883070000000000001",
            "8988307000000000001",
            "89000000000000000000",
        ] {
            assert_eq!(iccid_of_key(checked_iccid_key(iccid).unwrap()), iccid);
        }
    }
}
