//! How many of this run's requests the account may have counted when it answered one: the
//! most this run had in flight at any moment from that request's send to its answer.
//!
//! The server counts at some moment between the two, and every request of ours it counts
//! then was sent and not yet answered, so it is among what this run had in flight at that
//! moment. Reading ours at the send only, or when the answer is handled, can be far lower
//! than at the server's moment (in slow start the window doubles meanwhile; on a busy
//! machine answers are handled late, after others have freed their slots), and the gap was
//! reported as other traffic that does not exist. Taking the most over the whole interval
//! can only see other traffic a little low, never imagine it.

use std::collections::VecDeque;

/// The in-flight count after each send, kept only while it can still be the most for some
/// request: a later send with as many or more in flight supersedes every earlier one.
#[derive(Debug, Default)]
pub(super) struct InFlightHighs {
    /// (send's sequence number, requests in flight right after it), the sequence numbers
    /// rising and the counts falling from front to back. As long as the highest count, at
    /// most: the counts are distinct and each is at most the ceiling.
    highs: VecDeque<(u64, usize)>,
}

impl InFlightHighs {
    /// Send number `seq` left `in_flight` requests of ours in flight.
    pub(super) fn sent(&mut self, seq: u64, in_flight: usize) {
        while self
            .highs
            .back()
            .is_some_and(|&(_, count)| count <= in_flight)
        {
            self.highs.pop_back();
        }
        self.highs.push_back((seq, in_flight));
    }

    /// The most in flight at any moment since send number `seq` (counts only rise at a send).
    pub(super) fn since(&self, seq: u64) -> usize {
        let first = self.highs.partition_point(|&(sent, _)| sent < seq);
        self.highs.get(first).map_or(0, |&(_, count)| count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_in_flight_since_a_send() {
        let mut highs = InFlightHighs::default();
        // Slow start: 1, 2, 3, 4 in flight; then two answers come back, and sends at 3, 4, 5.
        for (seq, in_flight) in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 3), (6, 4), (7, 5)] {
            highs.sent(seq, in_flight);
        }
        assert_eq!(highs.since(1), 5);
        assert_eq!(highs.since(5), 5);
        highs.sent(8, 2);
        assert_eq!(highs.since(8), 2, "the latest send alone");
        assert_eq!(highs.since(7), 5);
        assert!(highs.highs.len() <= 5, "only the falling highs are kept");
    }
}
