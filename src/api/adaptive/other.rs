//! What the latest answers showed of the other traffic on the account: how many requests of
//! others were in flight, and whether the account was full. The room this run leaves is read
//! from here: the other traffic's usual high, not its mean, and one slot more while the other
//! app's requests are refused on more than [`CROWDED_SHARE`] of them, by the estimate below.
//!
//! A sampled count can only show what the other app got: while this run takes its room, the
//! other app's refused requests never appear in any count, so its highs are cut off at what
//! this run leaves it and the usual high reads no higher than that. What does show is how
//! often the account is full, and a request of the other app that arrives then is refused.
//! How often one arrives then depends on how its requests come. At random (a Poisson stream,
//! as many independent users make), about as often as this run's answers find the account
//! full. On a regular beat, far less often: each request comes a whole interval after the
//! last, when the account is at its emptiest (beside one, 5% of the answers found the
//! account full while 1.2% of its requests were refused). What tells the two apart is how
//! much the other traffic's count varies: its variance over its mean, the *peakedness* of
//! teletraffic theory, is 1 for random arrivals and less for a regular beat. The other
//! app's refusals are estimated as the share of full answers times the peakedness, a
//! first-order form of Hayward's approximation (a loss system offered traffic of
//! peakedness z blocks about as the Erlang system with servers and load divided by z).
//! Above the goal, the run gives up one more slot; the counts, no longer cut off there,
//! then show how much of it the other app uses.
//!
//! The room never falls to a level at which the counts below the room in use predict more
//! than [`REFUSED_GOAL`] of the other app's requests refused. Traffic whose requests arrive
//! at random and hold their slots for any time is an Erlang loss system, and such a
//! system's count, cut off at `r` slots, is distributed as the same count cut off higher,
//! then taken at or below `r` (the truncation property of reversible processes). So among
//! the answers that showed `r` or fewer, the share that showed exactly `r` is how often
//! such traffic would find `r` slots full, and be refused: Erlang's B, read off the counts
//! for each level below the room at once, and times the peakedness as above. At the room
//! itself the counts read low (beside a Poisson app with 11 left it, 1.6% of the answers at
//! or below 11 showed 11 while 3.5% of its requests were refused; with 12 left it, 2.4% to
//! 3.6% of those at or below 11 showed 11), so the level in use is judged as before. The
//! floor is what keeps a Poisson app's slot: beside one, the counts' 99th percentile, cut
//! off at the room, dipped one short whenever fewer than 1% of the latest answers showed
//! the top level, and the run sat there for seconds, refusing that app 2.4% to 3.4%.

use std::collections::VecDeque;

/// How many of the latest answers are kept: over ten seconds' worth at 100 or so answers a
/// second, so a high that the answers happen to miss for a while is not forgotten (leaving
/// the other app too little costs it 429s; leaving it too much for a while costs this run
/// only a little time). Counted in answers, not samples: where only 429s carry a count, a
/// count is kept as long, not for the rest of the run.
pub(super) const SAMPLES: usize = 2048;
/// The share of those answers whose other traffic the run leaves room for.
const QUANTILE: f64 = 0.99;
/// Below this many samples the usual high is also read off their mean and spread, up to
/// one above the highest seen (see [`OtherTraffic::normal_high`]), unless every one is of
/// a full account (see [`OtherTraffic::usual_high_up_to`]): beside a Poisson app,
/// the room read off the samples alone went 7, 8, 9, 10, 11 over the first ten seconds,
/// the window from 13 down to 8 where 8 is polite, and those seconds were most of the
/// app's refusals.
const FEW_SAMPLES: usize = 512;
/// The standard normal distribution's 99th percentile.
const NORMAL_99TH: f64 = 2.326;
/// The other app's requests refused, as estimated, above which the run leaves one more
/// slot. Below the 2% a shared run aims for: an app whose requests arrive at random finds
/// the account full a little more often than this run's answers do, since this run sends
/// as its own requests leave (beside one, 1.9% of the answers full while 2.6% of its
/// requests were refused).
const CROWDED_SHARE: f64 = 0.015;
/// The estimate under which the slot given up is taken back: between the two, the room
/// stays, so that it does not flip at each crossing.
const UNCROWDED_SHARE: f64 = 0.01;
/// The other app's requests refused, as the counts below the room predict, that the room
/// never falls to: what a shared run may cost it.
const REFUSED_GOAL: f64 = 0.02;
/// Counts above this are kept as this: a header with a garbage value must not size a table.
const MAX_COUNTED: u32 = 4096;

#[derive(Debug, Default)]
pub(super) struct OtherTraffic {
    /// The samples of the latest [`SAMPLES`] answers: (the answer's number, other traffic,
    /// account full), oldest first. Every answer counts, sampled or not (see
    /// [`Self::answered_without_a_sample`]).
    ring: VecDeque<(u64, u32, bool)>,
    /// The counts of refills' 429s (see [`Self::note_refill`]) of the latest
    /// `refill_memory` answers, as in `ring` (each of a full account).
    refills: VecDeque<(u64, u32, bool)>,
    /// How many answers a refill's 429 is kept for: [`SAMPLES`] until told otherwise.
    refill_memory: Option<u64>,
    /// The number of the latest answer, sampled or not: samples are aged in answers.
    answer_seq: u64,
    /// How many samples in the ring show each level of other traffic.
    levels: Vec<u32>,
    full: usize,
    /// Whether the run gives up one more slot: set when the other app's refusals, as
    /// estimated, go over [`CROWDED_SHARE`], cleared under [`UNCROWDED_SHARE`].
    crowded: bool,
    /// [`Self::room`], worked out once per answer: it is read several times per answer.
    room: u32,
    /// [`Self::peakedness`] as of the latest answer.
    peakedness: f64,
    /// Over the whole run, for the summary: answers, their sum and their highest.
    answers: u64,
    sum: u64,
    peak: u32,
}

impl OtherTraffic {
    /// Counts an answer that is not sampled (no count, or a probe's own 429): it ages the
    /// samples as any answer does.
    pub(super) fn answered_without_a_sample(&mut self) {
        if self.age() {
            self.refresh();
        }
    }

    /// Records one answer: `other` requests of others in flight, and whether the account
    /// was at its limit.
    pub(super) fn note(&mut self, other: u32, full: bool) {
        self.age();
        let other = self.count(other, full);
        self.ring.push_back((self.answer_seq, other, full));
        self.refresh();
    }

    /// Records the count of a refill's 429, where only 429s carry counts: a request sent
    /// into a slot one of this run's answers had freed, refused because the other app took
    /// the slot first. Its count shows the account full at this run's window less the slot,
    /// whatever the app needs; what tells is how often such 429s come, and that depends on
    /// the round trip (see [`crate::api::adaptive::State::refill_memory`]). It is kept
    /// for the latest `memory` answers, at most [`SAMPLES`]: the room holds it for as long
    /// as one such 429 takes to come while the app's refusals are at their goal. Then it
    /// steps down a slot per `memory` answers until a count kept is as high (see
    /// [`Self::step_down_from`]).
    pub(super) fn note_refill(&mut self, other: u32, memory: u64) {
        self.refill_memory = Some(memory.clamp(1, SAMPLES as u64));
        self.age();
        let other = self.count(other, true);
        self.refills.push_back((self.answer_seq, other, true));
        self.refresh();
    }

    /// Adds a sample to the run's figures and to the levels; the level it is kept at.
    fn count(&mut self, other: u32, full: bool) -> u32 {
        self.answers += 1;
        self.sum += u64::from(other);
        self.peak = self.peak.max(other);
        let other = other.min(MAX_COUNTED);
        if self.levels.len() <= other as usize {
            self.levels.resize(other as usize + 1, 0);
        }
        self.levels[other as usize] += 1;
        self.full += usize::from(full);
        other
    }

    /// How many samples are kept.
    fn samples(&self) -> usize {
        self.ring.len() + self.refills.len()
    }

    /// Counts one answer and lets go of the samples it takes out of the latest [`SAMPLES`]
    /// answers. Whether any left.
    fn age(&mut self) -> bool {
        self.answer_seq += 1;
        let oldest = |memory: u64| self.answer_seq.saturating_sub(memory - 1);
        let (oldest_sample, oldest_refill) = (
            oldest(SAMPLES as u64),
            oldest(self.refill_memory.unwrap_or(SAMPLES as u64)),
        );
        let samples_left = let_go(
            &mut self.ring,
            oldest_sample,
            &mut self.levels,
            &mut self.full,
        );
        let highest_refill_left = let_go(
            &mut self.refills,
            oldest_refill,
            &mut self.levels,
            &mut self.full,
        );
        if let Some(highest) = highest_refill_left {
            self.step_down_from(highest);
        }
        samples_left.is_some() || highest_refill_left.is_some()
    }

    /// Keeps a refill's count that left as one slot lower, for another memory, unless a
    /// count kept is as high: the room steps down one slot at a time to where the refills'
    /// 429s come back, rather than falling at once to what the climbs' counts show. Each
    /// refill's 429 reads the app a slot or two above the room it was left, so the room
    /// climbed a step per 429 and, when they all left, fell back at once (over a network
    /// the climbs read the app low): at 10 ms from the account, windows of 12, 10, 8, 6,
    /// then 15, and runs of 55 to 70 rows/s where a client fixed at 10 makes 75.
    fn step_down_from(&mut self, highest: u32) {
        let lower = highest.saturating_sub(1);
        let highest_kept = self.levels.iter().rposition(|&count| count > 0);
        if lower == 0 || highest_kept.is_some_and(|kept| kept >= lower as usize) {
            return;
        }
        self.refills.push_back((self.answer_seq, lower, true));
        self.levels[lower as usize] += 1;
        self.full += 1;
    }

    /// Works out the usual high, the estimate of the other app's refusals and the room from
    /// the samples kept.
    fn refresh(&mut self) {
        // A high that has left the ring (a garbage count, say) no longer lengthens the walk.
        while self.levels.last() == Some(&0) {
            self.levels.pop();
        }
        if self.samples() == 0 {
            self.crowded = false;
            self.peakedness = 0.0;
            self.room = 0;
            return;
        }
        let usual_high = self.usual_high();
        let peakedness = self.peakedness(usual_high);
        // Counts of a full account each show nothing of how the other app's requests come:
        // the slot is given up.
        let refused = if self.every_count_full() {
            1.0
        } else {
            self.full as f64 / self.samples() as f64 * peakedness
        };
        if refused > CROWDED_SHARE {
            self.crowded = true;
        } else if refused < UNCROWDED_SHARE {
            self.crowded = false;
        }
        self.peakedness = peakedness;
        let floor = self.erlang_floor(&self.levels);
        let room = self.room_for(usual_high).max(floor);
        if room != self.room {
            tracing::trace!(
                room,
                usual_high,
                crowded = self.crowded,
                floor,
                full = self.full,
                samples = self.samples(),
                peakedness,
                "room for other traffic"
            );
        }
        self.room = room;
    }

    /// How many of the latest answers found the account full.
    #[cfg(test)]
    pub(super) fn full_answers(&self) -> usize {
        self.full
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
    /// showed in flight, and one slot more while the other app's refusals, as estimated
    /// (see the module's doc), are over [`CROWDED_SHARE`].
    pub(super) fn room(&self) -> u32 {
        self.room
    }

    /// [`Self::room`] under an account limit of `limit`: answers that showed more other
    /// traffic than that are left out, since the account cannot hold them now. They are a
    /// garbage count, or the other app's level before the limit fell; where counts come on
    /// 429s only they are few, and one such count would otherwise be the usual high for
    /// the rest of the run.
    pub(super) fn room_under(&self, limit: f64) -> u32 {
        let top = limit.max(0.0).floor() as usize;
        if self.levels.len() <= top + 1 {
            return self.room;
        }
        self.room_for(self.usual_high_up_to(top))
            .max(self.erlang_floor(&self.levels[..=top]))
    }

    /// The least room the counts of `levels` below the room in use allow: one above the
    /// highest level `r` under it at which the other app's refusals, as predicted (the share
    /// of the answers at or below `r` that showed `r`, times the peakedness; see the module's
    /// doc), reach [`REFUSED_GOAL`]. None where only 429s carry a count (every one is of a
    /// full account, cut off at what this run left) or no other traffic shows.
    fn erlang_floor(&self, levels: &[u32]) -> u32 {
        if self.every_count_full() {
            return 0;
        }
        let levels = &levels[..levels.len().min(self.room as usize)];
        let mut at_or_below: u64 = levels.iter().map(|&count| u64::from(count)).sum();
        if at_or_below == levels.first().map_or(0, |&idle| u64::from(idle)) {
            return 0;
        }
        for (level, &count) in levels.iter().enumerate().rev() {
            if at_or_below > 0
                && f64::from(count) / at_or_below as f64 * self.peakedness >= REFUSED_GOAL
            {
                return level as u32 + 1;
            }
            at_or_below -= u64::from(count);
        }
        0
    }

    /// Whether every one of the latest counts is of a full account, as where only 429s
    /// carry one: each is then cut off at what this run left the other traffic, and shows
    /// what it got, not how its requests come or what it needs.
    fn every_count_full(&self) -> bool {
        self.full == self.samples()
    }

    /// The room for a usual high of `usual_high`: one slot more while crowded.
    fn room_for(&self, usual_high: u32) -> u32 {
        usual_high + u32::from(usual_high > 0 && self.crowded)
    }

    /// The other traffic's count's variance over its mean on the latest answers: 1 for
    /// requests arriving at random, less for requests on a regular beat. Counts above
    /// `usual_high` are taken as it: the top 1% that the room leaves out, a garbage count
    /// among them, must not make the traffic look peaked.
    fn peakedness(&self, usual_high: u32) -> f64 {
        let (mut n, mut sum, mut squares) = (0.0, 0.0, 0.0);
        for (level, &count) in self.levels.iter().enumerate() {
            let level = f64::from((level as u32).min(usual_high));
            let count = f64::from(count);
            n += count;
            sum += level * count;
            squares += level * level * count;
        }
        if sum == 0.0 {
            return 1.0;
        }
        let mean = sum / n;
        (squares / n - mean * mean) / mean
    }

    /// What all but the top 1% of the latest answers showed in flight.
    fn usual_high(&self) -> u32 {
        self.usual_high_up_to(self.levels.len())
    }

    /// What all but the top 1% of the latest answers showing at most `top` showed in flight.
    fn usual_high_up_to(&self, top: usize) -> u32 {
        let levels = &self.levels[..self.levels.len().min(top + 1)];
        let samples: usize = levels.iter().map(|&count| count as usize).sum();
        let above = ((samples as f64) * (1.0 - QUANTILE)).floor() as usize;
        let mut seen = 0;
        let mut usual_high = 0;
        for (level, &count) in levels.iter().enumerate().rev() {
            seen += count as usize;
            if seen > above {
                usual_high = level as u32;
                break;
            }
        }
        // Counts of a full account each: a climb's, high in this run's window, reads the
        // other app low, and a refill's high. Their spread is this run's window's, not the
        // app's, and read as the app's it took the room to 16 beside a Poisson app of mean 6
        // within seven 429s.
        if samples < FEW_SAMPLES && !self.every_count_full() {
            // One above the highest seen at most: a sample far off (a garbage count, say)
            // spreads the normal distribution as no other app's count does.
            let highest = levels.len().saturating_sub(1) as u32;
            let bound = Self::normal_high(levels).min(highest + 1).min(top as u32);
            usual_high = usual_high.max(bound);
        }
        usual_high
    }

    /// The 99th percentile of a normal distribution with the mean and spread of `levels`,
    /// rounded up: what a few samples say of the high better than their own 99th
    /// percentile, which is their highest, and rises with every new high for a while.
    fn normal_high(levels: &[u32]) -> u32 {
        let (mut n, mut sum, mut squares) = (0.0, 0.0, 0.0);
        for (level, &count) in levels.iter().enumerate() {
            let (level, count) = (level as f64, f64::from(count));
            n += count;
            sum += level * count;
            squares += level * level * count;
        }
        if n < 2.0 {
            return 0;
        }
        let mean = sum / n;
        let spread = (squares / n - mean * mean).max(0.0).sqrt();
        (mean + NORMAL_99TH * spread).ceil() as u32
    }
}

/// Lets go of the samples of `samples` (oldest first) taken before answer `oldest_kept`,
/// and of their part of `levels` and `full`. The highest let go, if any left.
fn let_go(
    samples: &mut VecDeque<(u64, u32, bool)>,
    oldest_kept: u64,
    levels: &mut [u32],
    full: &mut usize,
) -> Option<u32> {
    let mut highest = None;
    while let Some(&(at, old, old_full)) = samples.front()
        && at < oldest_kept
    {
        samples.pop_front();
        levels[old as usize] -= 1;
        *full -= usize::from(old_full);
        highest = highest.max(Some(old));
    }
    highest
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
    fn the_room_under_a_limit_leaves_out_counts_the_account_cannot_hold() {
        let mut other = OtherTraffic::default();
        for _ in 0..5 {
            other.note(8, true);
        }
        assert_eq!(
            other.room_under(20.0),
            other.room(),
            "nothing above the limit"
        );
        assert_eq!(other.room(), 9, "every answer full: one slot more");
        other.note(3988, true);
        assert!(
            other.room() >= 3989,
            "few samples: the garbage is the usual high"
        );
        assert_eq!(other.room_under(20.0), 9);
        assert_eq!(other.room_under(7.0), 0, "nothing the account could hold");
    }

    #[test]
    fn a_few_samples_are_read_for_their_spread_not_only_their_highest() {
        // 3, 6, 9 in turn, as a Poisson count of mean 6 spreads: its 99th percentile is 12,
        // and a dozen samples show 9 at most. Read off the samples alone, the room rose with
        // each new high for the first seconds of a run; the spread says one more, at most.
        let mut other = OtherTraffic::default();
        for n in 0..12 {
            other.note([3, 6, 9][n % 3], false);
        }
        assert_eq!(other.room(), 10);
        // A count that hardly varies is left little more than its highest.
        let mut steady = OtherTraffic::default();
        for n in 0..12 {
            steady.note([6, 7][n % 2], false);
        }
        assert_eq!(steady.room(), 8);
        // Enough samples speak for themselves: the steady count is left its highest. A third
        // of the other's answers show 9, and left 9, a count spread so would be refused on
        // a third of its requests (the floor of the module's doc): 10 stays.
        for n in 0..FEW_SAMPLES {
            other.note([3, 6, 9][n % 3], false);
            steady.note([6, 7][n % 2], false);
        }
        assert_eq!((other.room(), steady.room()), (10, 7));
    }

    /// Counts per level of a Poisson count of mean 6 (the benchmark's other app, 60/s
    /// holding 100 ms), up to 10.
    const POISSON_TO_10: [usize; 11] = [5, 30, 90, 180, 270, 325, 325, 278, 209, 139, 83];
    /// Counts per level as beside the benchmark's regular app (60/s, each request held
    /// 50 to 150 ms): 4 to 9, peakedness about 0.2.
    const REGULAR: [usize; 10] = [0, 0, 0, 0, 247, 653, 952, 628, 169, 8];

    /// The counts `per_level` stands for, spread as they would come (7919 is prime to any
    /// length this takes).
    fn spread(per_level: &[usize]) -> Vec<u32> {
        let mut samples = Vec::new();
        for (level, &count) in per_level.iter().enumerate() {
            samples.extend(std::iter::repeat_n(level as u32, count));
        }
        (0..samples.len())
            .map(|n| samples[n * 7919 % samples.len()])
            .collect()
    }

    /// Fills the ring with `values` in turn, every `full_every`th answer finding the
    /// account full.
    fn fill(other: &mut OtherTraffic, values: &[u32], full_every: usize) {
        for n in 0..SAMPLES {
            other.note(values[n % values.len()], n % full_every == full_every - 1);
        }
    }

    #[test]
    fn beside_random_arrivals_a_full_account_on_over_1_5_percent_costs_one_more_slot() {
        // A Poisson count cut off at 11, 1.5% of the answers at 11: all but the top 1% show
        // 11, and among those at or below 11 too few show 11 for the floor to ask for 12.
        let random = spread(&[&POISSON_TO_10[..], &[30]].concat());
        let mut other = OtherTraffic::default();
        fill(&mut other, &random, 100);
        let peakedness = other.peakedness(other.usual_high());
        // A Poisson count's is 1; cut off, a little less.
        assert!((0.8..1.0).contains(&peakedness), "{peakedness}");
        assert_eq!(other.room(), 11, "full on 1% of the answers");
        fill(&mut other, &random, 50);
        assert_eq!(other.room(), 12, "full on 2% of the answers");
        fill(&mut other, &random, 80);
        assert_eq!(
            other.room(),
            12,
            "1.25%: the slot is not taken back at once"
        );
        fill(&mut other, &random, 200);
        assert_eq!(other.room(), 11, "0.5%: taken back");
    }

    #[test]
    fn an_app_on_a_regular_beat_is_refused_less_often_than_the_account_is_full() {
        // A count that barely varies, as a regular beat's does; its requests come when the
        // account is at its emptiest.
        let regular = spread(&REGULAR);
        let mut other = OtherTraffic::default();
        fill(&mut other, &regular, 25);
        let peakedness = other.peakedness(other.usual_high());
        assert!(peakedness < 0.3, "{peakedness}");
        assert_eq!(other.room(), 8, "full on 4% of the answers");
        fill(&mut other, &regular, 5);
        assert_eq!(other.room(), 9, "full on 20% of the answers");
    }

    #[test]
    fn one_garbage_count_does_not_make_the_other_traffic_look_peaked() {
        // A count of 4096 among counts of 4 to 9 has a variance of thousands: taken as it
        // is, it would cost a slot for as long as it stays among the latest answers. Like
        // the usual high, the peakedness leaves out the top 1%.
        let mut other = OtherTraffic::default();
        fill(&mut other, &spread(&REGULAR), 25);
        other.note(u32::MAX, false);
        let peakedness = other.peakedness(other.usual_high());
        assert!(peakedness < 0.3, "{peakedness}");
        assert_eq!(other.room(), 8);
    }

    #[test]
    fn beside_random_arrivals_the_room_does_not_dip_where_the_counts_below_it_predict_refusals() {
        // A Poisson count of mean 6 cut off at 12, as beside a run that leaves it 12: 0.9% of
        // the answers show 12 (the account full), so all but the top 1% show 11 or less, and
        // the account is full too seldom for another slot. But 2.4% of the answers at or
        // below 11 show 11: with 11 left it, such an app is refused on about that share of
        // its requests. The room read off the 99th percentile alone was 11.
        let mut other = OtherTraffic::default();
        for level in spread(&[&POISSON_TO_10[..], &[47, 18]].concat()) {
            other.note(level, level == 12);
        }
        assert_eq!(other.usual_high(), 11, "the 99th percentile");
        assert!(!other.crowded, "full on {} answers", other.full);
        assert_eq!(other.room(), 12);
        assert_eq!(other.room_under(20.0), 12);
    }

    #[test]
    fn counts_on_429s_only_are_not_read_for_their_spread() {
        // Each 429 of a run beside a Poisson app of mean 6, as a climb from 12 or a refill at
        // 7 or 8 finds the account full: the other app at 8, then at 13 and 12. Read for
        // their spread, such counts put the usual high at one above the highest seen, and
        // with the slot for a full account the room at 15: the window 5 of 20.
        let mut other = OtherTraffic::default();
        for count in [8, 13, 12] {
            other.note(count, true);
        }
        assert_eq!(other.usual_high(), 13);
        assert_eq!(other.room(), 14, "the highest and one slot more");
    }

    #[test]
    fn counts_on_429s_only_set_no_floor_under_the_room() {
        // 429s of a run beside a bursty app: none of it in flight at some, 10 at others (a
        // peakedness of about 5), and first one count of 14, the drain of a limit that fell,
        // say. Once enough counts leave 14 out of the usual high, the room is 11. Counts
        // below the room in use (15) read for Erlang's B would show 14 on 1 in 201: times
        // the peakedness, over 2%, and the room would stay 15 for as long as that count
        // stays among the latest.
        let mut other = OtherTraffic::default();
        other.note(14, true);
        assert_eq!(other.room(), 15);
        for n in 0..200 {
            other.note([0, 10][n % 2], true);
        }
        assert!(other.peakedness > 4.0, "{}", other.peakedness);
        assert_eq!(other.usual_high(), 10);
        assert_eq!(other.room(), 11);
    }

    #[test]
    fn counts_on_429s_only_leave_after_as_many_answers_as_counts_on_every_answer() {
        // Beside a Poisson app of mean 6, a 429 as the run's answer frees a slot that the app
        // takes at once shows it at 14, a high it reaches for moments in minutes. Kept until
        // 2,048 more 429s came, it held the room at 15 (the window at 5 of 20) for the rest
        // of a 10,000-row run, and each later high of the kind lowered it again.
        let mut other = OtherTraffic::default();
        other.note(14, true);
        assert_eq!(other.room(), 15);
        for n in 1..SAMPLES {
            if n % 500 == 0 {
                other.note(9, true);
            } else {
                other.answered_without_a_sample();
            }
        }
        assert_eq!(other.room(), 15, "the high is among the latest answers");
        other.answered_without_a_sample();
        assert_eq!(
            other.room(),
            10,
            "the high has left the latest {SAMPLES} answers: the counts since and one slot"
        );
        for _ in 0..SAMPLES {
            other.answered_without_a_sample();
        }
        assert_eq!(other.room(), 0, "no count among the latest answers");
        assert_eq!(
            other.peak(),
            Some(14),
            "the run's highest is still reported"
        );
    }

    #[test]
    fn a_refills_count_is_kept_for_its_own_memory_then_steps_down_a_slot_per_memory() {
        let mut other = OtherTraffic::default();
        other.note(9, true);
        other.note_refill(13, 100);
        assert_eq!(other.room(), 14);
        for _ in 1..100 {
            other.answered_without_a_sample();
        }
        assert_eq!(other.room(), 14, "among the latest 100 answers");
        for room in [13, 12, 11] {
            other.answered_without_a_sample();
            assert_eq!(other.room(), room, "one slot lower as the count leaves");
            for _ in 1..100 {
                other.answered_without_a_sample();
            }
            assert_eq!(other.room(), room, "held for another 100 answers");
        }
        other.answered_without_a_sample();
        assert_eq!(
            other.room(),
            10,
            "down to the other count, which holds the room from here: no step below it"
        );
        assert_eq!(other.refills.len(), 0, "no step is kept below a kept count");
        other.note_refill(13, u64::MAX);
        for _ in 1..SAMPLES {
            other.answered_without_a_sample();
        }
        assert_eq!(other.room(), 14);
        other.answered_without_a_sample();
        assert_eq!(
            other.room(),
            13,
            "no memory is longer than {SAMPLES} answers: then it steps down"
        );
        assert_eq!(other.peak(), Some(13), "a step is not a count of the run's");
    }

    #[test]
    fn a_refills_count_steps_down_only_while_no_kept_count_is_as_high() {
        let mut other = OtherTraffic::default();
        other.note_refill(12, 50);
        for _ in 0..25 {
            other.answered_without_a_sample();
        }
        other.note_refill(11, 50);
        assert_eq!(other.room(), 13);
        for _ in 0..25 {
            other.answered_without_a_sample();
        }
        assert_eq!(
            other.room(),
            12,
            "the 12 left, and the 11 kept is its step: none is added"
        );
        for _ in 0..25 {
            other.answered_without_a_sample();
        }
        assert_eq!(other.room(), 11, "the 11 left: its step, 10");
        for _ in 0..50 * 9 {
            other.answered_without_a_sample();
        }
        assert_eq!(other.room(), 2, "a step a memory, down to 1");
        for _ in 0..50 {
            other.answered_without_a_sample();
        }
        assert_eq!(other.room(), 0, "no step at 0: nothing is kept");
        assert_eq!(other.refills.len(), 0);
    }

    #[test]
    fn with_no_other_traffic_a_full_account_leaves_no_room() {
        let mut other = OtherTraffic::default();
        for _ in 0..SAMPLES {
            other.note(0, true);
        }
        assert_eq!(other.room(), 0, "nobody to leave room for");
    }
}
