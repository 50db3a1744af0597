//! What the latest answers showed of the other traffic on the account: how many requests of
//! others were in flight, and whether the account was full. The room this run leaves is read
//! from here: the other traffic's usual high, not its mean, and one slot more while the
//! account is full on more than [`CROWDED_SHARE`] of the answers.
//!
//! A sampled count can only show what the other app got: while this run takes its room, the
//! other app's refused requests never appear in any count, so its highs are cut off at what
//! this run leaves it and the usual high reads no higher than that. What does show is how
//! often the account is full: a request of the other app that arrives then is refused, so
//! the share of answers that find the account full is about the share of the other app's
//! requests refused. Above the goal, the run gives up one more slot; the counts, no longer
//! cut off there, then show how much of it the other app uses, and the room settles where
//! the account is full on few enough answers.

/// How many of the latest answers are kept: over ten seconds' worth at 100 or so answers a
/// second, so a high that the answers happen to miss for a while is not forgotten (leaving
/// the other app too little costs it 429s; leaving it too much for a while costs this run
/// only a little time).
const SAMPLES: usize = 2048;
/// The share of those answers whose other traffic the run leaves room for.
const QUANTILE: f64 = 0.99;
/// The share of answers on which the account may be full before the run leaves one more
/// slot: the other app's requests refused, at most, that a shared run aims for.
const CROWDED_SHARE: f64 = 0.02;
/// Counts above this are kept as this: a header with a garbage value must not size a table.
const MAX_COUNTED: u32 = 4096;

#[derive(Debug, Default)]
pub(super) struct OtherTraffic {
    /// The latest samples (other traffic, account full), oldest overwritten first.
    ring: Vec<(u32, bool)>,
    next: usize,
    /// How many samples in the ring show each level of other traffic.
    levels: Vec<u32>,
    full: usize,
    /// [`Self::room`], worked out once per answer: it is read several times per answer.
    room: u32,
    /// Over the whole run, for the summary: answers, their sum and their highest.
    answers: u64,
    sum: u64,
    peak: u32,
}

impl OtherTraffic {
    /// Records one answer: `other` requests of others in flight, and whether the account
    /// was at its limit.
    pub(super) fn note(&mut self, other: u32, full: bool) {
        self.answers += 1;
        self.sum += u64::from(other);
        self.peak = self.peak.max(other);
        let other = other.min(MAX_COUNTED);
        if self.ring.len() < SAMPLES {
            self.ring.push((other, full));
        } else {
            let (old, old_full) = std::mem::replace(&mut self.ring[self.next], (other, full));
            self.levels[old as usize] -= 1;
            self.full -= usize::from(old_full);
        }
        self.next = (self.next + 1) % SAMPLES;
        if self.levels.len() <= other as usize {
            self.levels.resize(other as usize + 1, 0);
        }
        self.levels[other as usize] += 1;
        self.full += usize::from(full);
        // A high that has left the ring (a garbage count, say) no longer lengthens the walk.
        while self.levels.last() == Some(&0) {
            self.levels.pop();
        }
        let room = self.work_out_room();
        if room != self.room {
            tracing::trace!(
                room,
                full = self.full,
                samples = self.ring.len(),
                "room for other traffic"
            );
        }
        self.room = room;
    }

    /// The other traffic's mean in flight over the run, once an answer showed it.
    pub(super) fn mean(&self) -> Option<f64> {
        (self.answers > 0).then(|| self.sum as f64 / self.answers as f64)
    }

    /// The most other traffic one answer of the run showed.
    pub(super) fn peak(&self) -> Option<u32> {
        (self.answers > 0).then_some(self.peak)
    }

    /// The room to leave the other traffic: what all but the top 1% of the latest answers
    /// showed in flight, and one slot more while the account is full on more than
    /// [`CROWDED_SHARE`] of them with other traffic on it.
    pub(super) fn room(&self) -> u32 {
        self.room
    }

    fn work_out_room(&self) -> u32 {
        let samples = self.ring.len();
        if samples == 0 {
            return 0;
        }
        let above = ((samples as f64) * (1.0 - QUANTILE)).floor() as usize;
        let mut seen = 0;
        let mut level = 0;
        for (value, &count) in self.levels.iter().enumerate().rev() {
            seen += count as usize;
            if seen > above {
                level = value as u32;
                break;
            }
        }
        let crowded = level > 0 && self.full as f64 > CROWDED_SHARE * samples as f64;
        level + u32::from(crowded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_is_the_high_not_the_mean_and_old_samples_leave() {
        let mut other = OtherTraffic::default();
        assert_eq!(other.room(), 0);
        for n in 0..SAMPLES {
            other.note(if n % 20 == 0 { 7 } else { 6 }, false);
        }
        assert_eq!(other.room(), 7, "5% of answers at 7");
        // A single spike is not the usual high.
        other.note(40, false);
        assert_eq!(other.room(), 7);
        for _ in 0..SAMPLES {
            other.note(2, false);
        }
        assert_eq!(other.room(), 2, "the old highs have left the ring");
        other.note(u32::MAX, false);
        assert!(other.levels.len() <= MAX_COUNTED as usize + 1);
        for _ in 0..SAMPLES {
            other.note(2, false);
        }
        assert_eq!(
            other.levels.len(),
            3,
            "the garbage count has left the table"
        );
    }

    #[test]
    fn a_full_account_on_more_than_the_goal_costs_one_more_slot() {
        let mut other = OtherTraffic::default();
        for n in 0..SAMPLES {
            other.note(6, n % 100 == 0);
        }
        assert_eq!(other.room(), 6, "full on 1% of the answers");
        for n in 0..SAMPLES {
            other.note(6, n % 25 == 0);
        }
        assert_eq!(other.room(), 7, "full on 4% of the answers");
        for _ in 0..SAMPLES {
            other.note(6, true);
        }
        assert_eq!(other.room(), 7);
        for _ in 0..SAMPLES {
            other.note(0, true);
        }
        assert_eq!(
            other.room(),
            0,
            "no other traffic: nobody to leave room for"
        );
    }
}
