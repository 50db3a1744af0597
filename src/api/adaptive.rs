//! Adaptive concurrency: how many requests this run may have in flight right now, found by
//! feeling for the account's limit the way TCP feels for a link's capacity, and leaving room
//! for the other traffic on the same account.
//!
//! Twilio limits concurrent requests per *account* and does not publish the number; the
//! `Twilio-Concurrent-Requests` header, when sent, counts the whole account's requests in
//! flight, this run's and everyone else's. The controller, per answer:
//!
//! - **Slow start.** The window starts at [`INITIAL_WINDOW`] (twice that for a run long
//!   enough to afford it: see [`initial_window`]) and grows by one per success
//!   (doubling every round trip) until the first 429 or the ceiling, so a small limit costs a
//!   handful of 429s at start-up, not a burst at the ceiling. Growth, here and later, counts
//!   only while a row waits for a slot: as the rows run out the window stays where it was
//!   used.
//! - **With the header.** An answer shows the account's count `R`; `R` minus the most this
//!   run had in flight from the request's send to its answer (see [`ours`]) is the *other*
//!   traffic, so a run alone never sees any. A 429 puts the account's limit at
//!   `R - 1` (or at `R` when admitted answers just showed `R`: the header left the refused
//!   request out); the window's target is then `min(ceiling, max_share × limit, limit −
//!   room)`, where the room is the other traffic's usual high on the latest answers, not its
//!   mean, which would leave it too little half the time (see [`other`]). A 429 that shows
//!   more requests than this run's own cuts at once (to the room the header says is left).
//!   A 429 that shows the account full at fewer requests than it admitted or refused at
//!   before shows the limit fell: the account drains what it admitted under the old one,
//!   and a second such 429 in a row cuts the window as a storm does, rather than follow
//!   the drain down one refused request at a time.
//! - **Without the header.** A 429 puts this run's room at the rest of ours in flight as it
//!   comes back, at most one cut per round trip: 429s for requests sent before the cut are
//!   the same news, though each lowers the reading by one (it was taken for held). A 429 in
//!   the round right after a cut reads the room again; a third round in a row with a 429
//!   cuts multiplicatively, so a storm never persists.
//! - **Ageing.** A learned limit is a hint, not a wall: after some round trips at it without
//!   a 429 the limit is probed one higher (the window goes there at once), then two
//!   higher, then slow start from there for each further round trip the probe holds
//!   (with counts on admitted answers, one that shows the account above the old limit
//!   starts the slow start at once).
//!   A refused probe goes back to where it started. What probes and the climbs they set
//!   off cost in 429s is held to one in [`REQUESTS_PER_PROBE`] requests (see
//!   [`ProbeCharge`]): over a network the room this run sees wanders, a level can hold by
//!   luck, and the climb after it can cost a dozen or two.
//!   Below a limit held before (a fall of a quarter or more from a limit in use for some
//!   round trips), probes come as often as they would at the limit held, a few of them
//!   ahead of the budget, and one level that holds starts the climb, as TCP CUBIC goes
//!   back quickly toward the window it had before a loss. Without the header, a climb
//!   soon after a storm stops where the storm read the room, as TCP's slow start stops at
//!   its threshold.
//!   Without the header the first probe after a cut comes after
//!   [`FIRST_PROBE_AFTER_ROUNDS`] (a cut can read the room one low; if it holds, that was
//!   all, and the probing stops there) and each refused one doubles the wait, up to
//!   [`PROBE_AFTER_ROUNDS`];
//!   with it, probes only look for a rise, every [`PROBE_AFTER_ROUNDS`]. A header probe
//!   counts when an answer shows the account above the old limit (the slow start begins at
//!   that answer); otherwise it is withdrawn. With other traffic on the account the run
//!   leaves it room, so a window one higher seldom fills the account: a probe that is due
//!   waits for an answer that counts the account full, and its request, sent then, is
//!   refused at once unless the limit rose (or starts anyway after
//!   [`PROBE_AFTER_ROUNDS_SHARED`] more). At a small window probes are spaced further, so
//!   that [`REQUESTS_PER_PROBE`] requests go by between two (a probe that finds nothing is
//!   a 429).
//! - **Any convention.** Twilio does not say which answers carry the header: every one, 429s
//!   only, or none. Where admitted answers carry no count (429s only), probes are timed and
//!   judged as without the header, so a limit read from a 429's count is re-probed and a
//!   rise is found; the header can only help. There, once the counts show other traffic,
//!   the limit is no longer probed: the other app's refusals show in no count and this
//!   run's own requests are rarely the ones refused, so a probe's silence proves nothing;
//!   a 429 that counts the account above the learned limit is what shows a rise, and
//!   after [`PROBE_AFTER_ROUNDS_SHARED`] quiet round trips the run climbs as in slow start
//!   until one does (its requests beyond the window go into slots no answer of its own
//!   freed, so the first of them to find the account full is refused). Until
//!   the counts show other traffic, a 429 there reads this run's room as without the
//!   header: over a network the run's requests on the wire are in its flight but not in
//!   the count, and the account's limit taken as this run's held it below its room. A 429
//!   of a request sent at a steady window (a refill's) is kept for fewer answers the
//!   longer the round trip (see [`State::refill_memory`]): over a network such 429s come
//!   as often as the other app finds the account full. When one leaves, the room it set
//!   steps down a slot per memory rather than falling at once.
//!
//! Round trips are counted, not timed: a round ends when the answer to the first request
//! sent after the previous round's end comes back. Answers to requests sent before the
//! last cut do not grow the window: they tell of the window before it. With adaptation off
//! (`--no-adaptive`) the window stays at the ceiling.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use other::OtherTraffic;
use ours::InFlightHighs;

/// The window a short run starts with (or the ceiling, if lower; a longer run may start
/// wider: see [`initial_window`]). Its requests go at once, over
/// new connections, so the account sees them in any order, and a limit below it refuses
/// the difference: at 6, a limit of 5 costs one 429 (8 cost three, 1% of a 300-row
/// run). Doubling from 6 reaches 60 in four round trips, one more than tripling from 4,
/// which at 200 ms costs about 1% of a 3,000-row run; but where answers come in a train
/// (every latency the same) tripling had twice the window's worth refused (see
/// [`SLOW_START_GROWTH`]).
pub(crate) const INITIAL_WINDOW: f64 = 6.0;
/// The window a long run starts with: [`INITIAL_WINDOW`] doubled, so that it skips slow
/// start's first round trip. Doubling from 12 meets every limit of 12 or more where
/// doubling from 6 does, so above 12 it costs the same 429s, a round trip sooner: at a
/// limit of 60 and a fixed 200 ms, a 3,000-row run made 279.5 rows/s against 274.1 from 6
/// (by hand, two or three runs each). Starting at 10 (TCP's initial window) made 278.9,
/// but a limit of 20 was then a doubling's worth past the start, and its train refused 20
/// rather than 4.
const INITIAL_WINDOW_LONG_RUN: f64 = 2.0 * INITIAL_WINDOW;
/// The most of a run's rows a start at [`INITIAL_WINDOW_LONG_RUN`] may cost in 429s: a limit
/// of 1, the worst, refuses all but one of the first requests (11 of 12: a run of 2,750
/// SIMs or more).
const START_COST_SHARE: f64 = 0.004;
/// Round trips at a learned limit without a 429 before it is probed upward, at most: the
/// first probe after a cut comes after [`FIRST_PROBE_AFTER_ROUNDS`], and the wait doubles
/// with each probe that finds nothing. A rise is found at the next probe, half this wait
/// after it on average; at 16 the changing limit of the benchmark (8 for 7 s, then 25) lost
/// 0.3% more of its throughput for 0.2% fewer 429s (three runs each).
pub(crate) const PROBE_AFTER_ROUNDS: u64 = 10;
/// Round trips after a cut before the first probe: a cut can read the room one low.
pub(crate) const FIRST_PROBE_AFTER_ROUNDS: u64 = 8;
/// With other traffic on the account and counts on admitted answers, round trips a probe
/// that is due waits for an answer that counts the account full (see
/// [`ConcurrencyLimit::probe_when_full`]) before it starts without one, taking a slot the
/// other traffic could have had: about 6 s at 100 ms a round trip. With counts on 429s
/// only, quiet round trips between two climbs to a count (see
/// [`ConcurrencyLimit::climb_to_a_count`]), each of which leaves the other app a full
/// account for a moment.
pub(crate) const PROBE_AFTER_ROUNDS_SHARED: u64 = 64;
/// Requests sent between two probes, at least: a probe that finds nothing costs one 429,
/// and this keeps that under 1% of the requests, at any window. It is also the budget of
/// what probes cost in all: the 429s of a probe and of the climb it starts (see
/// [`ProbeCharge`]), at most one per this many requests, for a probe that held by luck
/// and set off a climb can cost a dozen.
const REQUESTS_PER_PROBE: u64 = 100;
/// Round trips from one probe to the next at most, however far over budget probes are (see
/// [`ProbeCharge`]): a rise must be found within seconds, and a storm's cut below the room
/// put right. The budget alone had a rise to 25 found 25 s late at a 40 ms network round
/// trip; at 40 round trips a run that cut to 17 after a rise to 24 sometimes ended there.
const PROBE_BUDGET_MAX_WAIT_ROUNDS: u64 = 20;
/// Slow start's growth per success: the window doubles per round trip, as TCP's does.
/// Where latencies vary, a 429 comes back before the next answer releases more requests,
/// and the overshoot is a request or two whatever the growth; where answers come in a
/// train, every request a round trip's growth released is sent before the first 429 can
/// come back, and tripling sent twice the window's worth past the limit. A climb after a
/// probe grows the same way: a level can hold by luck, and over a network the 429 that
/// ends a climb comes back a round trip after the request that overshot.
const SLOW_START_GROWTH: f64 = 1.0;
/// What a refill's 429 is weighed against (see [`State::refill_memory`]): it is kept for
/// `1 / (this × chance)` answers, then for as long again one slot lower, and so on (see
/// [`OtherTraffic::note_refill`]). Measured, not derived: beside a Poisson app (3,000
/// rows, by hand, three runs each), 0.02 had it refused 1.62% to 1.69% at 67 to 70 rows/s
/// at 40 ms (a client fixed at 11: 65.6 at 1.8%) and 1.50% to 1.85% at 70 to 73 at 10 ms
/// (fixed at 10: 74.9 at 2.24%; at 8, 67.3 at 0.63%); 0.03 1.57% to 2.37% at 40 ms;
/// 0.006, tuned before the room stepped down, held the room too long with it (48 to 59
/// rows/s at 0.55% to 1.0%, both distances). Over loopback the memory is the most there
/// is at any of these (see [`State::refill_memory`]).
const REFILL_REFUSED_GOAL: f64 = 0.02;
/// The fewest answers a refill's 429 is kept for: a few round trips at a small window.
const MIN_REFILL_MEMORY: u64 = 32;
/// Share of the window kept when 429s continue in the round trip right after a cut.
const STORM_FACTOR: f64 = 0.7;
/// A learned limit at most this share of one held before it is a fall, not a reading one
/// low: probes then come as often as they would at the limit held (see
/// [`State::probe_wait`]).
const FALLEN_SHARE: f64 = 0.75;
/// Round trips a learned limit must have been in use for before a cut that lowers it makes
/// it a limit held: the same as the first probe waits. At a 40 ms network round trip with
/// long-tailed holds, the room this run sees at a limit of 20 wanders from the low 20s to
/// about 30; a climb read it at 31, then a storm cut to 18, and taken for a limit held
/// that reading had probes come every few round trips, each level that held by luck
/// starting a climb (5.2% of one run's requests refused).
const HELD_AFTER_ROUNDS: u64 = FIRST_PROBE_AFTER_ROUNDS;
/// Round trips between probes below a limit held before, at least.
const PROBE_AFTER_ROUNDS_FALLEN: u64 = 5;
/// Probes that may be spent ahead of the budget below a limit held before: finding it back
/// is worth the held limit over the current one in throughput, and the budget a short run
/// has earned by the fall is a few probes.
const PROBE_BUDGET_AFTER_A_FALL: u64 = 10;
/// Round trips for which an admitted answer's count shows a header that leaves the refused
/// request out (see [`AdmittedCounts`]): about 5 s at 100 ms. Beside another app a run's
/// answers count the account full only now and then; remembered for two round trips, a
/// third of the 429s were read one below the limit. Longer, and a limit that fell by one
/// without a 429 showing it would be read one high for as long.
const ADMITTED_MEMORY_ROUNDS: usize = 50;

/// The most the account counted in flight on this run's admitted answers, per round trip,
/// over the last [`ADMITTED_MEMORY_ROUNDS`] and since the last fall: whether the header
/// leaves the refused request out of a 429's count. If it does, the account admits as many
/// as its 429s count; if it includes it (the emulator's way), one fewer. Answers to requests
/// sent before a fall showed are left out: counted as they leave, the fall's drain holds the
/// account above its new limit.
#[derive(Debug, Default)]
struct AdmittedCounts {
    /// Oldest round trip first; the current one last.
    peaks: std::collections::VecDeque<u32>,
    /// Requests up to this one were sent before the last fall showed.
    fallen_at_seq: u64,
}

impl AdmittedCounts {
    fn admitted(&mut self, seq: u64, reported: u32) {
        if seq <= self.fallen_at_seq {
            return;
        }
        match self.peaks.back_mut() {
            Some(peak) => *peak = (*peak).max(reported),
            None => self.peaks.push_back(reported),
        }
    }

    fn round_ended(&mut self) {
        self.peaks.push_back(0);
        if self.peaks.len() > ADMITTED_MEMORY_ROUNDS {
            self.peaks.pop_front();
        }
    }

    /// A 429 showed the limit fell; `sent` requests were sent by then.
    fn fell(&mut self, sent: u64) {
        self.peaks.clear();
        self.fallen_at_seq = sent;
    }

    fn most(&self) -> u32 {
        self.peaks.iter().copied().max().unwrap_or(0)
    }
}

/// A 429 with the account's count, as read when it arrived.
#[derive(Debug, Clone, Copy)]
struct CountedRefusal {
    reported: u32,
    /// The other traffic the count shows.
    other: u32,
    /// Whether the count shows the limit fell.
    fell: bool,
    /// Whether the count leaves the refused request out: the limit is the count itself.
    leaves_itself_out: bool,
}

/// How an answer bears on the account's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The request was admitted (any answer other than 429, 5xx and transport failures).
    Admitted,
    /// 429: the account was over its limit.
    Throttled,
    /// A server error or a timeout: says nothing about the limit.
    Neutral,
}

/// What the run saw, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Observed {
    /// The window at the end of the run.
    pub(crate) settled: usize,
    /// The lowest the window was cut to.
    pub(crate) lowest: usize,
    /// The highest the window reached.
    pub(crate) highest: usize,
    /// The account's limit as last learned (with the header), or this run's room (without).
    pub(crate) learned_limit: Option<usize>,
    /// Whether any answer carried `Twilio-Concurrent-Requests`.
    pub(crate) header_seen: bool,
    /// Whether an admitted answer carried it (not only 429s).
    pub(crate) header_on_admitted: bool,
    /// Whether `learned_limit` was read from a 429's count (the account's limit), not from
    /// the refused request's room (this run's).
    pub(crate) limit_counted: bool,
    /// Other traffic on the account: its mean requests in flight, from the header.
    pub(crate) other_in_flight: Option<f64>,
    /// The most other requests in flight one answer showed.
    pub(crate) other_peak: Option<u32>,
    /// The most of this run's requests in flight at once: a run too short to fill its
    /// window never had as many in flight as the window allowed.
    pub(crate) peak_in_flight: usize,
}

/// The limit at one moment, for the report's timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sampled {
    /// Requests this run may have in flight.
    pub(crate) window: usize,
    /// The account's limit (or this run's room) as learned so far.
    pub(crate) learned_limit: Option<usize>,
    /// Other traffic's mean in flight on the answers since the previous sample.
    pub(crate) other_in_flight: Option<f64>,
}

#[derive(Debug)]
struct State {
    /// Requests allowed in flight (fractional: growth adds fractions per success).
    window: f64,
    in_flight: usize,
    /// Requests waiting for a slot: while these and those in flight fit in the window, it
    /// is not what holds the run back, and growing it would only grow it into requests
    /// never sent.
    waiting: usize,
    /// The most of ours in flight at once, over the whole run.
    peak_in_flight: usize,
    /// Requests sent so far; each slot carries its sequence number.
    sent: u64,
    /// The most of ours in flight since each send, for reading other traffic off a count.
    highs: InFlightHighs,
    slow_start: bool,
    /// The account's limit (header) or this run's room (no header), once a 429 showed it.
    learned: Option<f64>,
    /// The highest learned limit a cut has lowered after it was in use for
    /// [`HELD_AFTER_ROUNDS`]: a limit that fell may come back.
    held: Option<f64>,
    /// The round trip in which a cut (or a climb's stop) last changed the learned limit.
    learned_round: u64,
    /// Without the header, the room the last storm read and the round trip it did: a climb
    /// soon after stops there (see [`ConcurrencyLimit::cap_the_climb`]).
    storm_room: Option<(f64, u64)>,
    /// The level the climb under way stops at, if any.
    climb_cap: Option<f64>,
    /// Other traffic on the latest answers, and over the whole run.
    other: OtherTraffic,
    /// Round trips completed, and the sequence number whose answer ends the current one.
    rounds: u64,
    round_mark: u64,
    /// Whether the window was full at some send this round or the last (growth and
    /// probes only count then: a run that does not fill its window learns nothing).
    round_full: bool,
    last_round_full: bool,
    /// 429s for requests sent up to here were answered by the last cut.
    cut_seq: u64,
    cut_round: u64,
    /// Round trips in a row, up to this one, with a fresh cut.
    cut_streak: u32,
    /// Without the header, the last cut's reading of the room (see
    /// [`State::correct_the_reading`]), until the first probe after it checks it.
    reading: Option<f64>,
    /// Full round trips since the last 429 or probe.
    quiet_rounds: u64,
    /// Without the header: full quiet round trips before the next probe (see
    /// [`State::probe_wait`]).
    probe_wait_without_header: u64,
    /// The next probe's step, and the probe under way.
    probe_step: f64,
    /// Requests sent when the last probe started.
    probe_sent: u64,
    probe: Option<Probe>,
    /// Beside other traffic, with counts on admitted answers: the round trip since which a
    /// probe is due, waiting for an answer that shows the account full (see
    /// [`ConcurrencyLimit::probe_when_full`]).
    probe_due_since: Option<u64>,
    /// The learned limit a climb to a count started from (see
    /// [`ConcurrencyLimit::climb_to_a_count`]), until its 429.
    climbing_from: Option<f64>,
    /// The 429s probes and their climbs have cost, and the requests they are charged for.
    probe_charge: ProbeCharge,
    /// The most the account showed in flight on an admitted answer this round, and the last.
    round_peak: u32,
    last_round_peak: u32,
    admitted_since_fall: AdmittedCounts,
    /// The account's count on the last 429 (0 before any).
    refused_at: u32,
    /// Whether an admitted answer carried the account's count (some servers send it on 429s
    /// only: then nothing shows a probe's level held but the absence of a 429).
    counts_admitted: bool,
    lowest: f64,
    highest: f64,
    /// Other traffic shown since the last [`ConcurrencyLimit::sample`]: sum and answers.
    other_since_sample: (u64, u64),
    /// The quickest 429 so far: a 429 holds no slot, so its time is the round trip between
    /// this run and the account (see [`State::refill_memory`]).
    round_trip: Option<Duration>,
    /// Admitted answers' time, smoothed (weight 1/8): a 429's request waits about as long
    /// before its retry, and less the round trip it is the hold (see
    /// [`State::refill_memory`]).
    admitted_round_trip: Option<Duration>,
}

/// The shared in-flight limit. Clone the `Arc` into every worker.
#[derive(Debug)]
pub(crate) struct ConcurrencyLimit {
    ceiling: usize,
    adaptive: bool,
    /// Most of the learned limit this run takes (1.0: all that other traffic leaves).
    max_share: f64,
    state: Mutex<State>,
    freed: Notify,
}

/// A slot for one request; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct RequestSlot {
    limit: Arc<ConcurrencyLimit>,
    /// This request's sequence number.
    seq: u64,
    /// This run's requests in flight when it was sent, itself included.
    ours_at_send: usize,
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.limit.lock().in_flight -= 1;
        self.limit.freed.notify_waiters();
    }
}

/// A request waiting in [`ConcurrencyLimit::acquire`], counted until it has its slot or
/// gives up waiting.
struct Waiting<'a>(&'a ConcurrencyLimit);

impl<'a> Waiting<'a> {
    fn start(limit: &'a ConcurrencyLimit) -> Self {
        limit.lock().waiting += 1;
        Waiting(limit)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

impl ConcurrencyLimit {
    /// A limit of at most `ceiling` in flight, taking at most `max_share` (0 to 1) of the
    /// account's limit once it is known, for a run of a few rows.
    #[cfg(test)]
    pub(crate) fn new(ceiling: usize, adaptive: bool, max_share: f64) -> Arc<Self> {
        Self::for_run(ceiling, adaptive, max_share, 0)
    }

    /// [`ConcurrencyLimit::new`] for a run that sends at least `planned` SIMs: it
    /// starts at the [`initial_window`] for them.
    pub(crate) fn for_run(
        ceiling: usize,
        adaptive: bool,
        max_share: f64,
        planned: u64,
    ) -> Arc<Self> {
        let ceiling = ceiling.max(1);
        let start = if adaptive {
            initial_window(planned).min(ceiling as f64)
        } else {
            ceiling as f64
        };
        Arc::new(ConcurrencyLimit {
            ceiling,
            adaptive,
            max_share: if max_share > 0.0 && max_share <= 1.0 {
                max_share
            } else {
                1.0
            },
            state: Mutex::new(State {
                window: start,
                in_flight: 0,
                waiting: 0,
                peak_in_flight: 0,
                sent: 0,
                highs: InFlightHighs::default(),
                slow_start: adaptive,
                learned: None,
                held: None,
                learned_round: 0,
                storm_room: None,
                climb_cap: None,
                other: OtherTraffic::default(),
                rounds: 0,
                round_mark: 1,
                round_full: false,
                last_round_full: false,
                cut_seq: 0,
                cut_round: 0,
                cut_streak: 0,
                reading: None,
                quiet_rounds: 0,
                probe_wait_without_header: FIRST_PROBE_AFTER_ROUNDS,
                probe_step: 1.0,
                probe_sent: 0,
                probe: None,
                probe_due_since: None,
                climbing_from: None,
                probe_charge: ProbeCharge::default(),
                round_peak: 0,
                last_round_peak: 0,
                admitted_since_fall: AdmittedCounts::default(),
                refused_at: 0,
                counts_admitted: false,
                lowest: start,
                highest: start,
                other_since_sample: (0, 0),
                round_trip: None,
                admitted_round_trip: None,
            }),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a free slot under the current window.
    pub(crate) async fn acquire(self: &Arc<Self>) -> RequestSlot {
        let _waiting = Waiting::start(self);
        loop {
            let freed = self.freed.notified();
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            freed.await;
        }
    }

    /// A slot if one is free now.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<RequestSlot> {
        let mut state = self.lock();
        let allowed = (state.window.floor() as usize).max(1);
        if state.in_flight >= allowed {
            return None;
        }
        state.in_flight += 1;
        state.peak_in_flight = state.peak_in_flight.max(state.in_flight);
        state.sent += 1;
        let (seq, in_flight) = (state.sent, state.in_flight);
        state.highs.sent(seq, in_flight);
        if state.in_flight >= allowed {
            state.round_full = true;
        }
        Some(RequestSlot {
            limit: self.clone(),
            seq: state.sent,
            ours_at_send: state.in_flight,
        })
    }

    /// Admitted answers' time, smoothed, once one came (with adaptation on).
    pub(crate) fn admitted_round_trip(&self) -> Option<Duration> {
        self.lock().admitted_round_trip
    }

    /// The limit of a run with far more rows than its window: a thousand wait for a slot
    /// throughout, as the dispatcher's rows do in [`Self::acquire`] while the window holds
    /// them back.
    #[cfg(test)]
    pub(crate) fn with_rows_waiting(self: Arc<Self>) -> Arc<Self> {
        self.lock().waiting += 1_000;
        self
    }

    /// The current window, rounded down.
    #[cfg(test)]
    pub(crate) fn current(&self) -> usize {
        (self.lock().window.floor() as usize).max(1)
    }

    /// What the run saw, for the summary.
    pub(crate) fn observed(&self) -> Observed {
        let state = self.lock();
        let whole = |v: f64| (v.floor() as usize).max(1);
        Observed {
            settled: whole(state.window),
            lowest: whole(state.lowest),
            highest: whole(state.highest),
            learned_limit: state.shown_limit().map(whole),
            header_seen: state.header_seen(),
            header_on_admitted: state.counts_admitted,
            limit_counted: state.counts_show_the_accounts_limit(),
            other_in_flight: state.other.mean(),
            other_peak: state.other.peak(),
            peak_in_flight: state.peak_in_flight,
        }
    }

    /// The limit now, for the report's timeline: the window, the limit learned so far, and
    /// the other traffic's mean in flight on the answers since the last sample (which this
    /// call starts anew).
    pub(crate) fn sample(&self) -> Sampled {
        let mut state = self.lock();
        let (sum, answers) = std::mem::take(&mut state.other_since_sample);
        let whole = |v: f64| (v.floor() as usize).max(1);
        Sampled {
            window: whole(state.window),
            learned_limit: state.shown_limit().map(whole),
            other_in_flight: (answers > 0).then(|| sum as f64 / answers as f64),
        }
    }

    /// The most the window may be: the ceiling, the share of the learned limit, and with the
    /// header the learned limit less the room other traffic needs (see [`other`]).
    fn target(&self, state: &State) -> f64 {
        let mut target = self.ceiling as f64;
        if let Some(learned) = state.learned {
            target = target.min((self.max_share * learned).max(1.0));
            target = target.min(state.room(learned));
        }
        target.max(1.0)
    }

    /// Whether `slot`'s request was sent while a probe or its climb was under way (see
    /// [`ProbeCharge`]): its 429 is the answer to this run's own question, whether the limit
    /// rose, and no news that the account is over its limit. That includes a request sent
    /// within the window the probe started from: where one of this run's requests had left
    /// the account before its answer was read, the probe's request took that slot and the
    /// next one was refused. But a 429 that would make a third round trip in a row with one
    /// is a storm, news to every worker whenever its request was sent: the probe's requests
    /// are those sent until a round trip passes without a cut, and 429s that keep coming
    /// never let it pass. Call before [`Self::on_answer`].
    pub(crate) fn probes_with(&self, slot: &RequestSlot) -> bool {
        if !self.adaptive {
            return false;
        }
        let state = self.lock();
        state.probe_charge.covers(slot.seq) && !state.a_429_now_is_a_storm()
    }

    /// [`Self::on_answer_after`] for an answer that took no time.
    #[cfg(test)]
    pub(crate) fn on_answer(&self, slot: &RequestSlot, answer: Answer, reported: Option<u32>) {
        self.on_answer_after(slot, answer, reported, Duration::ZERO);
    }

    /// `slot`'s request was answered `took` after it was sent; `reported` is the
    /// `Twilio-Concurrent-Requests` header of the answer, if it had one. Call before
    /// dropping the slot.
    pub(crate) fn on_answer_after(
        &self,
        slot: &RequestSlot,
        answer: Answer,
        reported: Option<u32>,
        took: Duration,
    ) {
        if !self.adaptive {
            return;
        }
        let mut state = self.lock();
        match answer {
            Answer::Throttled => {
                state.round_trip =
                    Some(state.round_trip.map_or(took, |quickest| quickest.min(took)));
            }
            Answer::Admitted => {
                state.admitted_round_trip = Some(
                    state
                        .admitted_round_trip
                        .map_or(took, |before| before - before / 8 + took / 8),
                );
            }
            Answer::Neutral => {}
        }
        // This run's requests that the account counted: at most what this run had in
        // flight at any moment from this request's send to now, since the server counted at
        // one of those moments (see [`ours`]). So other traffic is never imagined: alone, a
        // count shows none, whenever the server took it (as a 429 arrives, or as an answer
        // leaves) and however late this answer is handled.
        let ours = state.highs.since(slot.seq) as u32;
        // A 429's count is read before this answer ends a round trip, whose peak it would
        // forget.
        let refusal = reported
            .filter(|_| answer == Answer::Throttled)
            .map(|reported| state.read_a_refusal(reported, ours));
        let mut full_at_the_limit = false;
        let mut sampled = false;
        if let Some(reported) = reported {
            let other = refusal.map_or(reported.saturating_sub(ours), |refusal| refusal.other);
            let full = answer == Answer::Throttled
                || state
                    .learned
                    .is_some_and(|learned| f64::from(reported) >= learned.floor());
            // A probe's own 429 was sent because the account was full: where admitted
            // answers sample how often it is, that one would count the probe, not the
            // other app.
            let a_probes_refusal = answer == Answer::Throttled
                && state.counts_admitted
                && state.probe.is_some()
                && state.probe_charge.sent_above_its_start(slot.ours_at_send);
            // A 429 of a request sent at a steady window, where only 429s carry counts: a
            // refill's (see `OtherTraffic::note_refill`).
            let a_refills_refusal = answer == Answer::Throttled
                && !state.counts_admitted
                && !state.slow_start
                && !state.probe_charge.covers(slot.seq);
            if a_refills_refusal {
                sampled = true;
                let memory = state.refill_memory();
                tracing::trace!(
                    other,
                    memory,
                    reported,
                    ours,
                    window = state.window,
                    "refill's 429"
                );
                state.other.note_refill(other, memory);
                state.other_since_sample.0 += u64::from(other);
                state.other_since_sample.1 += 1;
            } else if !a_probes_refusal {
                sampled = true;
                state.other.note(other, full);
                state.other_since_sample.0 += u64::from(other);
                state.other_since_sample.1 += 1;
            }
            if answer == Answer::Admitted {
                state.counts_admitted = true;
                state.round_peak = state.round_peak.max(reported);
                state.admitted_since_fall.admitted(slot.seq, reported);
                if let Some(probe) = state.probe {
                    if f64::from(reported) > probe.from {
                        // The account admitted more than the old limit: it rose.
                        self.resume_slow_start(&mut state);
                    } else if state.other_room() > 0
                        && state.probe_charge.sent_above_its_start(slot.ours_at_send)
                    {
                        // The probe's request found a slot the other app had just left:
                        // holding the level longer only takes the next one it needs.
                        state.end_probe(probe.from);
                    }
                }
                full_at_the_limit = full;
                let above_the_limit = state.probe.is_none()
                    && state
                        .learned
                        .is_some_and(|learned| f64::from(reported) > learned);
                if above_the_limit
                    && state.other_room() > 0
                    && state.cut_round > 0
                    && state.rounds > state.cut_round + 1
                {
                    // Beside other traffic, a count above the limit a round trip or more
                    // after the last cut (not the drain of a fall): the account held more
                    // at once than the limit allowed. Read as the count of a header that
                    // leaves the refused request out (below), it raised the limit by one
                    // and the rise behind it went unfound for seconds, the probes' own
                    // 429s having set that count.
                    self.resume_slow_start(&mut state);
                } else if above_the_limit && reported == state.refused_at {
                    // Admitted with the last 429's count in flight: the header leaves the
                    // refused request out, and the limit is that count. (A higher count may
                    // be the tail of a limit that has just fallen.)
                    state.learned = Some(f64::from(reported));
                }
            }
        }
        if !sampled {
            // Where only 429s carry a count, samples are still kept for so many answers, not
            // for so many counts: that would be the whole run.
            state.other.answered_without_a_sample();
        }
        if slot.seq >= state.round_mark {
            self.end_round(&mut state);
        }
        // After the round's end: a probe started at the answer that ends a round would
        // count that round as one at its level.
        if full_at_the_limit {
            self.probe_when_full(&mut state);
        }
        match answer {
            Answer::Admitted => self.grow(&mut state, slot.seq),
            Answer::Throttled => self.cut(&mut state, slot, refusal),
            Answer::Neutral => {}
        }
        let target = self.target(&state);
        if state.window > target {
            state.window = target;
        }
        state.lowest = state.lowest.min(state.window);
        state.highest = state.highest.max(state.window);
    }

    /// An answer admitted request `seq`: the window may grow.
    fn grow(&self, state: &mut State, seq: u64) {
        // A request sent before the last cut tells of the window before it: after a fall,
        // the answers of the drain would grow the window back into the requests the drain
        // is still refusing.
        if !(state.round_full || state.last_round_full) || seq <= state.cut_seq {
            return;
        }
        // The window holds no row back: the rows are running out (the end of a run, a climb
        // that starts as the last rows go). Grown then, it told of requests never sent:
        // "settled at 32" beside a limit of 20, with 16 ever in flight. Counted with this
        // answer's slot still in flight, and with the rows that wait, not merely whether
        // one does: two answers handled before one waiting row got its slot each grew it.
        if state.in_flight + state.waiting <= state.window.floor() as usize {
            return;
        }
        let target = self.target(state);
        if state.window >= target {
            return;
        }
        // Slow start, and below a known target: one per success (doubles per round trip).
        // Close to the target: one per round trip.
        let step = if state.slow_start {
            SLOW_START_GROWTH
        } else if state.window + 1.0 < target {
            1.0
        } else {
            1.0 / state.window
        };
        let before = state.window.floor();
        state.window = (state.window + step).min(target);
        if state.slow_start
            && let Some(cap) = state.climb_cap
            && state.window >= cap
        {
            state.window = cap.min(target);
            state.slow_start = false;
            state.climb_cap = None;
            state.learned = Some(cap);
            state.learned_round = state.rounds;
            state.quiet_rounds = 0;
            tracing::trace!(cap, "climb stopped where the last storm read the room");
        }
        if state.window.floor() > before {
            tracing::trace!(window = state.window.floor(), "concurrency raised");
        }
    }

    /// A 429 for `slot`'s request; `header` is how the account's count on it read, when the
    /// answer had the header.
    fn cut(&self, state: &mut State, slot: &RequestSlot, header: Option<CountedRefusal>) {
        state.climbing_from = None;
        let learned_before = state.probe.map(|probe| probe.from).or(state.learned);
        self.cut_window(state, slot, header);
        if state.learned == learned_before {
            return;
        }
        // Only a limit in use for some round trips is one the account held: the readings of
        // a run of cuts (slow start's overshoot, a room that wanders over a network) are not.
        let in_use_for = state.rounds.saturating_sub(state.learned_round);
        state.learned_round = state.rounds;
        if let (Some(before), Some(after)) = (learned_before, state.learned)
            && after < before
            && in_use_for >= HELD_AFTER_ROUNDS
        {
            state.held = Some(state.held.map_or(before, |held| held.max(before)));
        }
    }

    /// The cut itself: the learned limit and the window, from a 429.
    fn cut_window(&self, state: &mut State, slot: &RequestSlot, header: Option<CountedRefusal>) {
        let fresh = slot.seq > state.cut_seq;
        state
            .probe_charge
            .refused(slot.seq, slot.ours_at_send, fresh);
        state.slow_start = false;
        state.climb_cap = None;
        state.quiet_rounds = 0;
        state.probe_due_since = None;
        state.probe_step = 1.0;
        // A probe refused found no rise: the level it started from held for many round
        // trips and still does, unless the header says the limit fell.
        let probe = state.probe.take();
        let in_a_row = state.cut_last_round();
        if fresh {
            state.probe_wait_without_header = match probe {
                Some(_) => (state.probe_wait_without_header * 2).min(PROBE_AFTER_ROUNDS),
                None => FIRST_PROBE_AFTER_ROUNDS,
            };
        }
        // Where only 429s carry a count and none has shown other traffic, the count says no
        // more than the refused request's own room, and over a network it says less: this
        // run's requests on the way there and back are in its flight but not in the count,
        // so the account's limit, taken as this run's, held it below its room while probes
        // found the levels above holding and climbed past it. The room is read as without
        // the header.
        let header =
            header.filter(|refusal| refusal.other > 0 || state.counts_show_the_accounts_limit());
        match header {
            Some(CountedRefusal {
                reported,
                other,
                fell,
                leaves_itself_out,
            }) => {
                // A 429 only ever lowers a learned limit and rises are found by probing,
                // except where probes are off (see `State::blind_to_other_refusals`).
                let fell = fell && probe.is_none();
                let limit = if leaves_itself_out {
                    f64::from(reported)
                } else {
                    (f64::from(reported) - 1.0).max(1.0)
                };
                let probe_refused = probe.is_some_and(|probe| limit >= probe.from);
                let limit = match probe {
                    Some(probe) if probe_refused => probe.from,
                    // Not probed: a count above the learned limit is the only sign of a rise.
                    _ if state.blind_to_other_refusals() => limit,
                    _ => state.learned.map_or(limit, |learned| learned.min(limit)),
                };
                state.learned = Some(limit);
                state.refused_at = reported;
                if fell && fresh {
                    state.admitted_since_fall.fell(state.sent);
                }
                if probe_refused {
                    state.window = state.window.min(limit);
                } else if fresh {
                    // Room left now, by this very answer (the average may lag a surge).
                    let room_left = (limit - f64::from(other)).max(1.0);
                    // A second fall in a row: each answer of the drain frees a slot, and a
                    // window that follows the count down one at a time sends a request into
                    // each, to be refused. Cut as in a storm, and let the drain finish.
                    let storm = fell && in_a_row && state.cut_streak >= 1;
                    state.window = if storm {
                        room_left.min(state.window * STORM_FACTOR).max(1.0)
                    } else {
                        state.window.min(room_left)
                    };
                }
            }
            None => {
                if !fresh {
                    state.correct_the_reading();
                    return;
                }
                // The room: the rest of ours in flight now (see `State::correct_the_reading`).
                // Counted at this request's send instead, it depended on the order in which
                // requests sent together reached the account: the first six of a run, sent
                // at once over new connections, had the room of a limit of 5 read as 1.
                let room = (state.in_flight as f64 - 1.0).max(1.0);
                let room = probe.map_or(room, |probe| room.max(probe.from));
                // A second cut in a row may only correct the first's reading of the room
                // (requests of ours still on their way were counted); a third is a storm.
                let storm = probe.is_none() && state.a_429_now_is_a_storm();
                let window = if storm {
                    state.storm_room = Some((room, state.rounds));
                    room.min(state.window * STORM_FACTOR)
                } else {
                    room.min(state.window)
                };
                state.window = window.max(1.0);
                state.learned = Some(state.window);
                state.reading = (!storm && probe.is_none()).then_some(state.window);
            }
        }
        if fresh {
            state.cut_streak = match probe {
                Some(_) => 0,
                None if in_a_row => state.cut_streak + 1,
                None => 1,
            };
            state.cut_seq = state.sent;
            state.cut_round = state.rounds.max(1);
            tracing::debug!(
                window = state.window.floor(),
                learned = state.learned,
                "429: concurrency cut"
            );
        }
    }

    /// A round trip ended: age the learned limit.
    fn end_round(&self, state: &mut State) {
        let cut_in_it = state.cut_round >= state.rounds.max(1);
        state.probe_charge.round_ended(state.sent, cut_in_it);
        state.rounds += 1;
        state.round_mark = state.sent + 1;
        let full = std::mem::take(&mut state.round_full);
        state.last_round_full = full;
        let peak = std::mem::take(&mut state.round_peak);
        state.last_round_peak = peak;
        state.admitted_since_fall.round_ended();
        let Some(learned) = state.learned else {
            return;
        };
        if let Some(probe) = state.probe {
            if !probe.reached {
                // The probe counts from the first full round trip at the window it allows
                // (its level, less the other traffic's room).
                if state.window.floor() >= self.target(state).floor() && full {
                    state.probe = Some(Probe {
                        reached: true,
                        ..probe
                    });
                }
                return;
            }
            match ProbeEvidence::of_round(state.counts_admitted, peak, probe.from, full) {
                ProbeEvidence::Counted => self.resume_slow_start(state),
                ProbeEvidence::Unrefused if state.blind_to_other_refusals() => {
                    // The other app appeared while the probe was under way: its silence
                    // proves nothing (see `State::blind_to_other_refusals`).
                    state.end_probe(probe.from);
                    state.probe_step = 1.0;
                }
                // Two steps held without a count: as good a sign of a rise as a count.
                // Below a limit held before, one is: the limit coming back is likely.
                ProbeEvidence::Unrefused
                    if state.probe_step >= 2.0 || state.fallen_from().is_some() =>
                {
                    self.resume_slow_start(state);
                    self.cap_the_climb(state);
                }
                // The room was read one low. Probing two higher at once cost two 429s at a
                // limit of 5 (a third of a 300-row run's share), for a rise that a cut a
                // few round trips before makes unlikely: the next probe looks for it.
                ProbeEvidence::Unrefused if probe.checks_a_reading => {
                    state.end_probe(probe.level);
                    state.probe_wait_without_header = PROBE_AFTER_ROUNDS;
                }
                ProbeEvidence::Unrefused => {
                    state.learned = Some(probe.level);
                    state.probe_step *= 2.0;
                    self.start_probe(state, probe.level);
                }
                ProbeEvidence::Nothing => state.end_probe(probe.from),
            }
            return;
        }
        if full {
            state.quiet_rounds += 1;
        }
        // A run held to its --max-share stays below the limit: a probe there proves nothing.
        let share_bound = self.max_share * learned < state.room(learned);
        if state.quiet_rounds >= state.probe_wait()
            && state.probe_spaced()
            && !share_bound
            && state.probe_charge.allows_another(
                state.sent,
                state.rounds,
                state.fallen_from().is_some(),
            )
        {
            if state.blind_to_other_refusals() {
                if state.quiet_rounds >= PROBE_AFTER_ROUNDS_SHARED {
                    self.climb_to_a_count(state);
                }
                return;
            }
            if state.counts_admitted && state.other_room() > 0 {
                // Beside other traffic the probe waits for the account to be full (see
                // `probe_when_full`), unless that does not come for long.
                let due_since = *state.probe_due_since.get_or_insert(state.rounds);
                if state.rounds < due_since + PROBE_AFTER_ROUNDS_SHARED {
                    return;
                }
            }
            state.probe_due_since = None;
            state.quiet_rounds = 0;
            self.start_probe(state, learned);
        }
    }

    /// Where counts come on 429s only and have shown other traffic, the one way to learn the
    /// limit now is a 429's count, and this run's requests are refused only when the
    /// account is full as they arrive: slow start from the window, whose second request
    /// per answer goes into a slot no answer of ours freed, is refused within an answer
    /// of the account filling, and its count shows the limit, risen or not, and the other
    /// traffic at that moment.
    fn climb_to_a_count(&self, state: &mut State) {
        state.quiet_rounds = 0;
        state.probe_sent = state.sent;
        state
            .probe_charge
            .open(state.sent, state.window, state.rounds);
        let climbing_from = state.learned;
        self.resume_slow_start(state);
        state.climbing_from = climbing_from;
        tracing::trace!(window = state.window.floor(), "climbing to a count");
    }

    /// An admitted answer counted the account full at the learned limit: a probe that is
    /// due starts now. Beside other traffic the run leaves room for the other app's high,
    /// so the account is rarely full by this run's doing, and one request above the window
    /// proves nothing unless the account is full when it arrives: then it is refused at
    /// once if the limit has not risen (a 429 of this run's, holding no slot the other app
    /// could have had), and admitted, with a count above the old limit, if it has. A probe
    /// started at any other moment left the window one above the polite share for round
    /// trips, for a count that showed a rise of 14 in none of 20 seconds.
    fn probe_when_full(&self, state: &mut State) {
        if state.probe.is_some() || state.probe_due_since.is_none() {
            return;
        }
        let Some(learned) = state.learned else {
            return;
        };
        state.probe_due_since = None;
        state.quiet_rounds = 0;
        self.start_probe(state, learned);
    }

    /// The limit rose: slow start again from the window, rather than creep up a step at a
    /// time (a rise of one costs only the few 429s of the overshoot).
    fn resume_slow_start(&self, state: &mut State) {
        state.learned = None;
        state.climbing_from = None;
        state.probe = None;
        state.probe_step = 1.0;
        state.slow_start = true;
    }

    /// A climb that a probe's silence set off soon after a storm (within
    /// [`PROBE_BUDGET_MAX_WAIT_ROUNDS`]) stops where the storm read the room, as TCP's slow
    /// start stops at its threshold, and probes go on from there. A storm cuts the window
    /// to 70% and over a network the room as this run sees it wanders: the climb back
    /// doubled each round trip past the room, and its 429s, a round trip late, came by the
    /// dozen, every few seconds. A limit that has risen since is found by the probes after.
    fn cap_the_climb(&self, state: &mut State) {
        state.climb_cap = match state.storm_room.take() {
            Some((room, round))
                if state.rounds <= round + PROBE_BUDGET_MAX_WAIT_ROUNDS && room > state.window =>
            {
                Some(room)
            }
            _ => None,
        };
    }

    /// Lets the window go `probe_step` above the learned limit `from`.
    fn start_probe(&self, state: &mut State, from: f64) {
        let ceiling = self.ceiling as f64;
        if from >= ceiling {
            state.probe = None;
            return;
        }
        let level = (from + state.probe_step).min(ceiling);
        state.probe_sent = state.sent;
        state
            .probe_charge
            .open(state.sent, state.window, state.rounds);
        state.learned = Some(level);
        let checks_a_reading = state.probe_step == 1.0 && state.reading.take().is_some();
        state.probe = Some(Probe {
            from,
            level,
            reached: false,
            checks_a_reading,
        });
        // The probe asks at once: growing to its level would take a round trip more.
        let step = state.window + state.probe_step;
        state.window = state.window.max(self.target(state).min(step));
        tracing::trace!(from, level, "probing above the learned limit");
    }
}

/// The window a run of `planned` SIMs starts with: [`INITIAL_WINDOW_LONG_RUN`] where the
/// worst its start can cost, all but one of the first requests refused at a limit of 1, is
/// within [`START_COST_SHARE`] of them, else [`INITIAL_WINDOW`]. The start's round trips
/// cost a long run as much time as a short one, and a smaller share of it.
fn initial_window(planned: u64) -> f64 {
    if planned as f64 * START_COST_SHARE >= INITIAL_WINDOW_LONG_RUN - 1.0 {
        INITIAL_WINDOW_LONG_RUN
    } else {
        INITIAL_WINDOW
    }
}

impl State {
    /// The limit to show: during a probe or a climb to a count, the limit as it was before
    /// (each is a question, not a find).
    fn shown_limit(&self) -> Option<f64> {
        self.probe
            .map(|probe| probe.from)
            .or(self.learned)
            .or(self.climbing_from)
    }

    /// Whether any answer carried `Twilio-Concurrent-Requests` (each is noted in `other`).
    fn header_seen(&self) -> bool {
        self.other.peak().is_some()
    }

    /// How a 429 counting `reported` in flight reads, `ours` of this run's requests, the
    /// refused one included, counted at most. The limit is one less if the count includes
    /// the refused request (the emulator's way), or `reported` itself if it does not, which
    /// shows when admitted answers counted as many (see [`AdmittedCounts`]).
    fn read_a_refusal(&self, reported: u32, ours: u32) -> CountedRefusal {
        let admitted_peak = self.round_peak.max(self.last_round_peak);
        // Full at fewer requests than the account admitted or refused at before: the limit
        // fell, by how much the drain of what it admitted before will show.
        let fell = reported < admitted_peak.max(self.refused_at);
        let leaves_itself_out =
            admitted_peak == reported || (!fell && self.admitted_since_fall.most() == reported);
        // A count without the refused request holds one fewer of ours: left at that, each
        // count of a full account would show the other app a slot short.
        let counted = if leaves_itself_out {
            reported.saturating_add(1)
        } else {
            reported
        };
        CountedRefusal {
            reported,
            other: counted.saturating_sub(ours),
            fell,
            leaves_itself_out,
        }
    }

    /// How many answers a refill's 429 holds the room for (see
    /// [`OtherTraffic::note_refill`]). A refill's request reaches the account a round trip
    /// after its slot freed, and is refused when the other app's request took the slot
    /// meanwhile: as often as the account is full, times the chance that one of the app's
    /// requests came within the round trip, `1 − e^(−λ·RTT)`. So such 429s come as often
    /// as a Poisson app finds the account full over a network, and rarely over loopback;
    /// each is kept for `1 / (REFILL_REFUSED_GOAL × chance)` answers, at most
    /// [`other::SAMPLES`]. The round trip is the quickest 429's time, which takes a 429 to
    /// come back at once: a server that answers its 429s later looks farther away, and the
    /// run takes slots the app needs (not handled; see docs/design.md, "A 429 that takes its
    /// time"). The app's rate `λ` is
    /// taken as half the room over the mean hold (an app of random arrivals whose usual
    /// high is the room holds about half of it). Over loopback the chance is a few percent
    /// at most and the memory is the most there is; at 40 ms from the account it is about
    /// 0.8, and the memory about 60 answers. Kept for 2,048 answers there, each such 429
    /// lowered the window by two slots until one came per 2,048 answers: a window of 4 or 5
    /// beside a Poisson app, where a client fixed at 11 refused it 1.8%.
    fn refill_memory(&self) -> u64 {
        let most = other::SAMPLES as u64;
        let (Some(round_trip), Some(admitted)) = (self.round_trip, self.admitted_round_trip) else {
            return most;
        };
        let round_trip = round_trip.as_secs_f64();
        let hold = (admitted.as_secs_f64() - round_trip).max(f64::EPSILON);
        let arrivals = f64::from(self.other.room().max(1)) / 2.0 / hold * round_trip;
        let in_time = 1.0 - (-arrivals).exp();
        let memory = 1.0 / (REFILL_REFUSED_GOAL * in_time);
        if memory.is_finite() {
            (memory as u64).clamp(MIN_REFILL_MEMORY, most)
        } else {
            most
        }
    }

    /// Whether counts come on 429s only and have shown other traffic. Then nothing shows the
    /// other app's refusals, and this run's own requests are rarely refused: each is sent
    /// into a slot one of its own answers just freed, while the other app's arrive whenever
    /// they come (over loopback, beside a Poisson app refused on 7.4% of its requests, 0.2%
    /// of this run's were). A probe's silence proves nothing there, so the learned limit
    /// is not probed; a 429's count is what shows a rise (see
    /// [`ConcurrencyLimit::climb_to_a_count`]).
    fn blind_to_other_refusals(&self) -> bool {
        !self.counts_admitted && self.other_room() > 0
    }

    /// Whether the last cut came in this round trip or the one before: a 429 now is one
    /// more in a row.
    fn cut_last_round(&self) -> bool {
        self.cut_round > 0 && self.rounds <= self.cut_round + 1
    }

    /// Whether a 429 now would make a third round trip in a row with one: a storm, which
    /// every worker waits out (see [`ConcurrencyLimit::probes_with`]) and the window is
    /// cut hard for. A second in a row may only correct the first's reading of the room.
    fn a_429_now_is_a_storm(&self) -> bool {
        self.cut_last_round() && self.cut_streak >= 2
    }

    /// Whether a 429's count is read as the account's limit: where admitted answers carry
    /// counts too, or once counts have shown other traffic (see
    /// [`ConcurrencyLimit::cut_window`]); otherwise a 429 reads this run's room.
    fn counts_show_the_accounts_limit(&self) -> bool {
        self.counts_admitted || self.other_room() > 0
    }

    /// A 429 for a request sent before the last cut, which already answered it. The cut
    /// read the room as the rest of ours in flight, this request among them, taken for held
    /// by the account: it was not, and the room is one less. Where answers come in a train
    /// (a server whose latency does not vary) every request the train released is sent
    /// before the first 429 comes back, and the refusals come back together, handled in any
    /// order: read from the first handled alone, a limit of 5 was 9, then 7 and a storm.
    fn correct_the_reading(&mut self) {
        let Some(room) = self.reading.filter(|&room| room > 1.0) else {
            return;
        };
        let room = room - 1.0;
        self.reading = Some(room);
        self.window = self.window.min(room);
        self.learned = self.learned.map(|learned| learned.min(room));
        tracing::debug!(window = self.window.floor(), "429: room read again");
    }

    /// The probe under way is over, the limit learned at `learned`; the next one waits its
    /// turn from here.
    fn end_probe(&mut self, learned: f64) {
        self.learned = Some(learned);
        self.probe = None;
        self.probe_charge.close(self.sent);
        self.quiet_rounds = 0;
    }

    /// The room for other traffic under the learned limit (see [`OtherTraffic::room_under`]).
    fn other_room(&self) -> u32 {
        self.learned
            .map_or(self.other.room(), |learned| self.other.room_under(learned))
    }

    /// The limit held before, when the learned one is a fall from it (see [`FALLEN_SHARE`]).
    fn fallen_from(&self) -> Option<f64> {
        let (learned, held) = (self.learned?, self.held?);
        (learned <= held * FALLEN_SHARE).then_some(held)
    }

    /// Full quiet round trips before the next probe. Without counts on admitted answers (no
    /// header, or a header on 429s only), a cut can read the room one low and nothing else
    /// shows a rise, so the first probe after one comes soon and each probe that finds
    /// nothing doubles the wait. With them, the limit a 429 shows is exact and probes only
    /// look for a rise. With other traffic on the account, a probe that is due then waits
    /// for a full account (see [`ConcurrencyLimit::probe_when_full`]), or, with counts on
    /// 429s only, a climb to a count comes after [`PROBE_AFTER_ROUNDS_SHARED`].
    fn probe_wait(&self) -> u64 {
        if self.fallen_from().is_some() {
            // Below a limit held before, as TCP CUBIC goes back quickly toward the window it
            // had before a loss: probes come as often as they would at the limit held (see
            // `State::probe_spaced`), and the budget lets a few go ahead of it (see
            // [`ProbeCharge::allows_another`]).
            PROBE_AFTER_ROUNDS_FALLEN
        } else if !self.counts_admitted {
            self.probe_wait_without_header
        } else {
            PROBE_AFTER_ROUNDS
        }
    }

    /// Whether enough requests went by since the last probe for another: a probe that finds
    /// nothing costs one 429, so [`REQUESTS_PER_PROBE`]; below a limit held before, that
    /// times the learned limit over the held one (40 at 8 of 20); none for the first probe
    /// after a cut without counts on admitted answers, which puts right a room read one
    /// low. Round trips
    /// alone would not do: at a small window they are few requests, with long-tailed
    /// latencies a round trip ends with its quickest answer, and one that ends with a 429
    /// is shorter still (at a limit of 5, a probe every 3.5 s rather than every 6).
    fn probe_spaced(&self) -> bool {
        let first_after_a_cut =
            !self.counts_admitted && self.probe_wait_without_header == FIRST_PROBE_AFTER_ROUNDS;
        let requests = match (self.fallen_from(), self.learned) {
            (Some(held), Some(learned)) => (REQUESTS_PER_PROBE as f64 * learned / held).ceil(),
            _ if first_after_a_cut => 0.0,
            _ => REQUESTS_PER_PROBE as f64,
        };
        self.sent >= self.probe_sent + requests as u64
    }

    /// The room the account leaves this run under `limit`: all of it without the header,
    /// else less what other traffic needs.
    fn room(&self, limit: f64) -> f64 {
        if !self.header_seen() {
            return limit;
        }
        limit - f64::from(self.other.room_under(limit))
    }
}

/// What probes have cost. A probe is charged for the 429s of the requests it and the
/// climb it set off sent above the window it started from, from its start until a round
/// trip passes without a cut: its own refusal, or the climb's overshoot. One that met
/// nothing is usually one 429; one whose level held by luck (the room as this run sees it
/// wanders when the network holds some of its requests) sets off a climb that can cost a
/// dozen or two, and the next probe waits until the budget has them back. A limit that
/// falls meanwhile refuses requests sent at or below that window: not the probe's doing.
#[derive(Debug, Clone, Copy, Default)]
struct ProbeCharge {
    /// 429s charged so far.
    refused: u64,
    /// Requests after this sequence number are charged, up to `until` (open while the
    /// probe or its climb is under way).
    since: Option<u64>,
    until: Option<u64>,
    /// The window the probe started from: requests sent with no more of ours in flight
    /// would have been sent without it.
    from_window: f64,
    /// Whether a cut has come since the probe started: it is over once a round trip passes
    /// without another.
    cut: bool,
    /// The round trip the last probe started in.
    opened_round: u64,
}

impl ProbeCharge {
    /// A probe starts with `sent` requests sent and `window` allowed in flight, in round
    /// trip `round`. One under way (a second step) goes on.
    fn open(&mut self, sent: u64, window: f64, round: u64) {
        if self.since.is_none() || self.until.is_some() {
            *self = ProbeCharge {
                refused: self.refused,
                since: Some(sent),
                until: None,
                from_window: window.floor(),
                cut: false,
                opened_round: round,
            };
        }
    }

    /// The probe ended with `sent` requests sent: 429s for those still come back, later
    /// ones are not the probe's.
    fn close(&mut self, sent: u64) {
        if self.since.is_some() && self.until.is_none() {
            self.until = Some(sent);
        }
    }

    /// A 429 for request `seq`, sent with `ours_at_send` in flight; `fresh` if it is news
    /// (a cut).
    fn refused(&mut self, seq: u64, ours_at_send: usize, fresh: bool) {
        if self.covers(seq) {
            if self.charges(seq, ours_at_send) {
                self.refused += 1;
            }
            self.cut |= fresh;
        }
    }

    /// Whether request `seq` was sent while the probe or its climb was under way.
    fn covers(&self, seq: u64) -> bool {
        self.since
            .is_some_and(|since| seq > since && self.until.is_none_or(|until| seq <= until))
    }

    /// Whether request `seq`, sent with `ours_at_send` in flight, is charged to the probe:
    /// sent while it was under way, above the window it started from.
    fn charges(&self, seq: u64, ours_at_send: usize) -> bool {
        self.covers(seq) && ours_at_send as f64 > self.from_window
    }

    /// A round trip ended with `sent` requests sent; `cut_in_it` whether it had a cut.
    fn round_ended(&mut self, sent: u64, cut_in_it: bool) {
        if self.cut && !cut_in_it {
            self.close(sent);
        }
    }

    /// Whether a request sent with `ours_at_send` of this run's in flight, itself included,
    /// went above the window the probe under way started from.
    fn sent_above_its_start(&self, ours_at_send: usize) -> bool {
        self.since.is_some() && ours_at_send as f64 > self.from_window
    }

    /// Whether another probe fits the budget, with `sent` requests sent, in round trip
    /// `round`; `fallen` below a limit held before, when [`PROBE_BUDGET_AFTER_A_FALL`]
    /// probes may go ahead of it. However far over it, a probe comes every
    /// [`PROBE_BUDGET_MAX_WAIT_ROUNDS`], so a limit that rises is still found within seconds.
    fn allows_another(&self, sent: u64, round: u64, fallen: bool) -> bool {
        let ahead = if fallen { PROBE_BUDGET_AFTER_A_FALL } else { 0 };
        self.refused * REQUESTS_PER_PROBE <= sent + ahead * REQUESTS_PER_PROBE
            || round.saturating_sub(self.opened_round) >= PROBE_BUDGET_MAX_WAIT_ROUNDS
    }
}

/// A probe above the learned limit.
#[derive(Debug, Clone, Copy)]
struct Probe {
    /// The learned limit before the probe, to go back to if it proves nothing.
    from: f64,
    /// The limit the probe allows.
    level: f64,
    /// Whether the window has run a full round trip at `level`.
    reached: bool,
    /// Whether it is the first probe after a cut that read the room: it checks the reading,
    /// which can be one low, and holding says that much, not that the limit rose.
    checks_a_reading: bool,
}

/// What a round trip at a probe's level showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeEvidence {
    /// An answer counted the account above the old limit: the limit rose.
    Counted,
    /// The round trip filled the window at the level and met no 429, where admitted answers
    /// carry no count (no header, or a server that sends it on 429s only): the level held.
    Unrefused,
    /// Neither. With counts on admitted answers, a quiet round may be other traffic that
    /// happened to pause; without them, a round that did not fill the window (the last rows
    /// of a run) put no request at the level.
    Nothing,
}

impl ProbeEvidence {
    /// The evidence of a round trip that ended with the probe at its level: `counts_admitted`
    /// whether admitted answers carry the account's count, `peak` the most one counted this
    /// round, `from` the limit before the probe, `full` whether the window filled.
    fn of_round(counts_admitted: bool, peak: u32, from: f64, full: bool) -> Self {
        match (counts_admitted, full) {
            (true, _) if f64::from(peak) > from => ProbeEvidence::Counted,
            (false, true) => ProbeEvidence::Unrefused,
            _ => ProbeEvidence::Nothing,
        }
    }
}

mod other;
mod ours;
#[cfg(test)]
mod tests;
