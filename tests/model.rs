//! A model-based test of the promises a results file makes, across many runs over one
//! account and one results file.
//!
//! A seeded loop plays an operator and a hostile world: between runs it edits the input
//! (inserts SIMs, removes and reorders lines, fixes a refused code, adds a line that is not
//! a SIM, repeats a line), during a run it may SIGKILL the process after a chosen number of
//! create requests, and the emulator meets a share of the requests with random faults (5xx,
//! 429, lost and slow responses). After every run the file and the account are checked
//! against what the README promises:
//!
//! - no SIM was created twice, and no two rows hold the same SID for different ICCIDs;
//! - every `registered` / `already_registered` row holds the account's SID for its ICCID;
//! - once the file has recorded a SIM's SID, a later run never loses that row, whatever was
//!   removed from or added to the input;
//! - after a run that ended on its own: each SIM of the input has exactly one row (repeats
//!   aside), on the line where the SIM now stands, every SIM the account holds from the input
//!   is recorded with its SID, and the exit code agrees with the rows.
//!
//! A second model plays the update step over the same machinery. The input has `fleet` and
//! `unique_name` columns (a third of the SIMs leave the Fleet to `--fleet`, a quarter ask
//! no name); each run draws whether it passes `--fleet` (either of the account's Fleets,
//! so a SIM can be moved), `--activate` and `--wait`; kills count update requests too; and
//! a share of the updates meet one or two faults drawn at random: a success that applied
//! nothing, a scheduled change that falls back, a Fleet shown only once the change is done,
//! a lost, cut-short or slow answer, 83009 and 5xx (creates and fetches meet a few lost,
//! cut-short, slow, 500 and 429 answers). Besides the checks above (a row with the SID of a
//! SIM whose update failed or gave up counts as the SIM on the account):
//!
//! - after every run, the account shows each SIM only a Fleet some run asked for that SIM,
//!   its own unique name, and a status other than `new` only once a run asked to activate
//!   it: no SIM was sent an update meant for another;
//! - after a run that finished, each SIM's last row that it wrote and that says the SIM is
//!   registered shows the Fleet, status and unique name the account shows (`scheduled` only
//!   without `--wait`) and what the run asked for (a `scheduled` row may show no Fleet yet);
//! - after a final clean run (every code fixed, no fault, no kill, `--fleet field-devices
//!   --activate`, `--wait` drawn), it exits 0 and every SIM of the input is in the Fleet
//!   asked for, active (or, without `--wait`, scheduled to become active) and named as
//!   asked, and recorded so.
//!
//! `SUPERSIM_MODEL_RUNS` (default 12) and `SUPERSIM_MODEL_SEED` widen the search of both; a
//! failure prints the seed and the run so it can be replayed.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Stdio;

use common::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use supersim_bulk::emulator::{EmulatorConfig, Fault, SimRecord, fleet_sid_for};
use supersim_bulk::input::checks::luhn_ok;

/// One line of the input as the model holds it.
#[derive(Clone, Debug)]
enum Line {
    /// A SIM: its ICCID and the code written for it (right or wrong).
    Sim { iccid: String, code: String },
    /// A line that is not a SIM (an ICCID with a letter in it).
    NotASim(String),
}

impl Line {
    fn csv(&self) -> String {
        match self {
            Line::Sim { iccid, code } => format!("{iccid},{code}"),
            Line::NotASim(text) => text.clone(),
        }
    }

    fn iccid(&self) -> Option<&str> {
        match self {
            Line::Sim { iccid, .. } => Some(iccid),
            Line::NotASim(_) => None,
        }
    }
}

/// The `fleet` cell of SIM number `n` in the onboarding model: empty (`--fleet` applies) or
/// one of the account's two Fleets, so SIMs side by side ask for different Fleets.
fn fleet_cell(n: u32) -> &'static str {
    ["", "field-devices", "bench"][(n % 3) as usize]
}

/// The `unique_name` cell of SIM number `n` in the onboarding model (some SIMs ask none).
fn unique_name_cell(n: u32) -> Option<String> {
    (n % 4 != 3).then(|| format!("tracker-{n:04}"))
}

/// The SIM number an ICCID of [`sim_iccid`] was made from.
fn sim_number(iccid: &str) -> u32 {
    iccid[10..19].parse().expect("an ICCID of sim_iccid")
}

/// A Super SIM ICCID for SIM number `n`, with a valid Luhn check digit so the run logs no
/// warning about it.
fn sim_iccid(n: u32) -> String {
    let body = format!("8988307000{n:09}");
    (0..10)
        .map(|check| format!("{body}{check}"))
        .find(|iccid| luhn_ok(iccid))
        .expect("one check digit fits")
}

fn registration_code_for_sim(iccid: &str) -> String {
    supersim_bulk::emulator::registration_code_for(iccid)
}

struct World {
    rng: StdRng,
    input: Vec<Line>,
    /// SIM numbers handed out so far.
    next_sim: u32,
    /// ICCID → SID of every SIM the results file has recorded as on the account: such a row
    /// must never be lost.
    recorded: BTreeMap<String, String>,
    /// The onboarding model: the input has `fleet` and `unique_name` columns, and a run may
    /// pass `--fleet`, `--activate` and `--wait`.
    onboarding: bool,
    /// ICCID → the Fleet SIDs any run asked for that SIM (onboarding model).
    asked_fleets: BTreeMap<String, BTreeSet<String>>,
    /// The SIMs some run asked to activate (onboarding model).
    asked_active: BTreeSet<String>,
}

impl World {
    fn new(seed: u64, onboarding: bool) -> World {
        World {
            rng: StdRng::seed_from_u64(seed),
            input: Vec::new(),
            next_sim: 0,
            recorded: BTreeMap::new(),
            onboarding,
            asked_fleets: BTreeMap::new(),
            asked_active: BTreeSet::new(),
        }
    }

    fn new_sim_line(&mut self) -> Line {
        self.next_sim += 1;
        let iccid = sim_iccid(self.next_sim);
        let code = if self.rng.random_range(0..5) == 0 {
            wrong_code(&registration_code_for_sim(&iccid))
        } else {
            registration_code_for_sim(&iccid)
        };
        Line::Sim { iccid, code }
    }

    fn random_position(&mut self, extra: usize) -> usize {
        self.rng.random_range(0..self.input.len() + extra)
    }

    /// One random edit of the input, described for the failure message.
    fn edit(&mut self) -> String {
        match self.rng.random_range(0..10) {
            0..=2 => {
                let count = self.rng.random_range(1..=4);
                for _ in 0..count {
                    let line = self.new_sim_line();
                    let at = self.random_position(1);
                    self.input.insert(at, line);
                }
                format!("inserted {count} new SIM(s)")
            }
            3 | 4 if !self.input.is_empty() => {
                let at = self.random_position(0);
                let gone = self.input.remove(at);
                format!("removed line {} ({})", at + 2, gone.csv())
            }
            5 if self.input.len() > 1 => {
                for i in (1..self.input.len()).rev() {
                    let j = self.rng.random_range(0..=i);
                    self.input.swap(i, j);
                }
                "reordered every line".to_string()
            }
            6 => {
                let wrong: Vec<usize> = (0..self.input.len())
                    .filter(|&i| {
                        matches!(&self.input[i], Line::Sim { iccid, code }
                            if *code != registration_code_for_sim(iccid))
                    })
                    .collect();
                match wrong.get(self.rng.random_range(0..wrong.len().max(1))) {
                    Some(&i) => {
                        if let Line::Sim { iccid, code } = &mut self.input[i] {
                            *code = registration_code_for_sim(iccid);
                        }
                        format!("fixed the code on line {}", i + 2)
                    }
                    None => "nothing to fix".to_string(),
                }
            }
            7 => {
                self.next_sim += 1;
                let text = format!("89883070000X{:08},ABCDEFGHIJ", self.next_sim);
                let at = self.random_position(1);
                self.input.insert(at, Line::NotASim(text));
                "inserted a line that is not a SIM".to_string()
            }
            8 if !self.input.is_empty() => {
                let from = self.random_position(0);
                let line = self.input[from].clone();
                let at = self.random_position(1);
                self.input.insert(at, line);
                format!("repeated line {} at {}", from + 2, at + 2)
            }
            _ => "no edit".to_string(),
        }
    }

    fn write_input(&self, env: &TestEnv) {
        let mut text = String::from("Iccid,RegistrationCode");
        if self.onboarding {
            text.push_str(",fleet,unique_name");
        }
        text.push('\n');
        for line in &self.input {
            text.push_str(&line.csv());
            if self.onboarding {
                match line.iccid().map(sim_number) {
                    Some(n) => text.push_str(&format!(
                        ",{},{}",
                        fleet_cell(n),
                        unique_name_cell(n).unwrap_or_default()
                    )),
                    None => text.push_str(",,"),
                }
            }
            text.push('\n');
        }
        env.write_csv(&text);
    }

    /// The Fleet (by unique name) a run with these flags asks for this SIM, if any.
    fn fleet_asked(iccid: &str, flags: &Onboard) -> Option<&'static str> {
        match fleet_cell(sim_number(iccid)) {
            "" => flags.fleet,
            cell => Some(cell),
        }
    }
}

/// What a run did, as the checks need it.
struct Ran {
    killed: bool,
    exit: Option<i32>,
    stderr: String,
}

/// The requests a kill is counted in: creates and updates (a run without an update step
/// sends none of the latter).
fn requests(stats: &supersim_bulk::emulator::Stats) -> u64 {
    stats.create_requests + stats.update_requests
}

/// Runs `register` once; when `kill_after` is set, SIGKILLs it once the emulator has seen
/// that many more create and update requests (or lets it end, if it ends first).
async fn run_once(env: &TestEnv, kill_after: Option<u64>, extra: &[&str]) -> Ran {
    let log = env.dir.path().join("stderr.log");
    let mut command = env.register_command(extra, &TestEnv::test_credentials());
    command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("the binary starts");
    let creates_before = requests(&env.emulator.stats());
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Some(after) = kill_after
            && requests(&env.emulator.stats()) >= creates_before + after
        {
            child.start_kill().unwrap();
            killed = true;
            break child.wait().await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    };
    Ran {
        killed,
        exit: status.code(),
        stderr: std::fs::read_to_string(&log).unwrap_or_default(),
    }
}

/// The results file's whole records (a record cut by a kill is left out), as column → value.
fn whole_rows(env: &TestEnv) -> Vec<HashMap<String, String>> {
    let Ok(mut bytes) = std::fs::read(env.results_path()) else {
        return Vec::new();
    };
    match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => bytes.truncate(end + 1),
        None => return Vec::new(),
    }
    csv_rows(&bytes)
}

const SUCCEEDED: [&str; 2] = ["registered", "already_registered"];

/// True when `row` says its SIM is on the account: `registered` / `already_registered`,
/// or, when a run has an update step, an update that failed or gave up on a SIM whose SID
/// the row holds (the next run resumes at the update).
fn registered(world: &World, row: &HashMap<String, String>) -> bool {
    SUCCEEDED.contains(&row["outcome"].as_str())
        || (world.onboarding
            && ["gave_up", "update_failed"].contains(&row["outcome"].as_str())
            && !row["sid"].is_empty())
}

/// The checks that hold after every run, killed or not. Returns what broke.
fn check_always(env: &TestEnv, world: &mut World, rows: &[HashMap<String, String>]) -> Vec<String> {
    let mut broken = Vec::new();
    for n in 1..=world.next_sim {
        let iccid = sim_iccid(n);
        let commits = env.emulator.commits(&iccid);
        if commits > 1 {
            broken.push(format!("{iccid} was created {commits} times"));
        }
    }
    let mut sid_owner: HashMap<&str, &str> = HashMap::new();
    for row in rows {
        let (iccid, sid) = (row["iccid"].as_str(), row["sid"].as_str());
        if !sid.is_empty()
            && let Some(other) = sid_owner.insert(sid, iccid)
            && other != iccid
        {
            broken.push(format!("{sid} is the SID of rows for {other} and {iccid}"));
        }
        if registered(world, row) {
            let on_account = env.emulator.sim(iccid).map(|sim| sim.sid);
            if on_account.as_deref() != Some(sid) || sid.is_empty() {
                broken.push(format!(
                    "line {} says {iccid} is {} with SID {sid:?}; the account has {on_account:?}",
                    row["line"], row["outcome"]
                ));
            }
        }
    }
    // The last word about each SIM (the journal's later rows win until compaction).
    let mut last: HashMap<&str, &HashMap<String, String>> = HashMap::new();
    for row in rows {
        if row["outcome"] != "duplicate" {
            last.insert(row["iccid"].as_str(), row);
        }
    }
    for (iccid, sid) in &world.recorded {
        match last.get(iccid.as_str()) {
            Some(row) if registered(world, row) && row["sid"] == *sid => {}
            other => broken.push(format!(
                "the file recorded {iccid} with {sid} once; now it says {:?}",
                other.map(|row| (&row["line"], &row["outcome"], &row["sid"]))
            )),
        }
    }
    for (iccid, row) in last {
        if SUCCEEDED.contains(&row["outcome"].as_str()) && !row["sid"].is_empty() {
            world.recorded.insert(iccid.to_string(), row["sid"].clone());
        }
    }
    broken
}

/// The checks that hold after a run that ended on its own.
fn check_finished(
    env: &TestEnv,
    world: &World,
    rows: &[HashMap<String, String>],
    exit: Option<i32>,
    summary: Option<serde_json::Value>,
) -> Vec<String> {
    let mut broken = Vec::new();
    // A run that stopped early for a reason of the world's (the faults can make every answer
    // of a short run a dropped connection, which reads as an unreachable API) says so, with
    // its own exit code, and leaves the rest for the next run.
    let Some(summary) = summary else {
        broken.push("no summary JSON was written".to_string());
        return broken;
    };
    match summary["end"].as_str() {
        Some("finished") => {}
        Some("unreachable") => {
            if exit != Some(75) {
                broken.push(format!(
                    "an unreachable API ended the run with exit {exit:?}"
                ));
            }
            return broken;
        }
        other => {
            broken.push(format!("the run ended {other:?} (exit {exit:?})"));
            return broken;
        }
    }
    let mut first_line: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, line) in world.input.iter().enumerate() {
        if let Some(iccid) = line.iccid() {
            first_line.entry(iccid).or_insert(i + 2);
        }
    }
    let mut by_sim: HashMap<&str, Vec<&HashMap<String, String>>> = HashMap::new();
    for row in rows {
        if row["outcome"] != "duplicate" && row["outcome"] != "invalid" {
            by_sim.entry(row["iccid"].as_str()).or_default().push(row);
        }
    }
    let mut outcomes = BTreeSet::new();
    for (&iccid, &line) in &first_line {
        let rows = by_sim.get(iccid).map(Vec::as_slice).unwrap_or_default();
        let [row] = rows else {
            broken.push(format!(
                "{iccid} (line {line}) has {} rows, not one",
                rows.len()
            ));
            continue;
        };
        if row["line"] != line.to_string() {
            broken.push(format!(
                "{iccid} stands on line {line}, its row says line {}",
                row["line"]
            ));
        }
        if env.emulator.sim(iccid).is_some() && !registered(world, row) {
            broken.push(format!(
                "{iccid} is on the account, its row says {}",
                row["outcome"]
            ));
        }
        outcomes.insert(row["outcome"].clone());
    }
    // The exit code describes this run (docs/reference.md): what it finished, as the summary
    // counts it; and the summary accounts for every line of the input.
    let this_run = |outcome: &str| summary["this_run"][outcome].as_u64().unwrap_or(0);
    let refused = this_run("rejected") + this_run("invalid") + this_run("update_failed");
    let expected = if refused > 0 {
        1
    } else if this_run("gave_up") > 0 {
        75
    } else {
        0
    };
    if exit != Some(expected) || summary["exit_code"].as_i64() != exit.map(i64::from) {
        broken.push(format!(
            "exit code {exit:?} (summary: {}), but this run's rows ({}) call for {expected}",
            summary["exit_code"], summary["this_run"]
        ));
    }
    let total = |counts: &serde_json::Value| -> u64 {
        counts
            .as_object()
            .map(|map| map.values().filter_map(serde_json::Value::as_u64).sum())
            .unwrap_or(0)
    };
    let accounted =
        total(&summary["this_run"]) + summary["skipped_as_finished"].as_u64().unwrap_or(0);
    if accounted != world.input.len() as u64
        || total(&summary["whole_file"]) != world.input.len() as u64
    {
        broken.push(format!(
            "{} input lines, but the summary accounts for {accounted} this run and {} in the file",
            world.input.len(),
            total(&summary["whole_file"])
        ));
    }
    // A SIM that gave up is sent again by every run, so a `gave_up` row after a run that
    // ended on its own was written by it, and the exit code must say so.
    if outcomes.contains("gave_up") && exit == Some(0) {
        broken.push("a SIM of the input is gave_up, and the run exited 0".to_string());
    }
    broken
}

/// The summary JSON a run left, if it left one that parses (a killed run leaves none).
fn read_summary(path: &std::path::Path) -> Option<serde_json::Value> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
}

/// What a broken promise prints: which run, what broke, the runs before it, the input it
/// ran on and its stderr, so the seed can be replayed and the run read.
fn failure(which: &str, broken: &[String], history: &[String], world: &World, ran: &Ran) -> String {
    let input: Vec<String> = world.input.iter().map(Line::csv).collect();
    format!(
        "{which}:\n  {}\n\nhistory:\n  {}\n\ninput:\n{}\n\nstderr:\n{}",
        broken.join("\n  "),
        history.join("\n  "),
        input.join("\n"),
        ran.stderr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promises_hold_across_runs_edits_kills_and_faults() {
    let (seed, runs) = seed_and_runs(12);
    let env = TestEnv::with_config(EmulatorConfig {
        fail_rate: 0.15,
        seed,
        ..EmulatorConfig::default()
    })
    .await;
    let mut world = World::new(seed, false);
    for _ in 0..12 {
        let line = world.new_sim_line();
        world.input.push(line);
    }
    let mut history = Vec::new();
    let summary_path = env.dir.path().join("last-run.json");
    for run in 1..=runs {
        let edits: Vec<String> = (0..world.rng.random_range(0..3))
            .map(|_| world.edit())
            .collect();
        world.write_input(&env);
        // A lost response now and then, on a SIM of the input that is not on the account.
        let fresh: Vec<String> = world
            .input
            .iter()
            .filter_map(Line::iccid)
            .filter(|iccid| env.emulator.sim(iccid).is_none())
            .map(String::from)
            .collect();
        if !fresh.is_empty() {
            let iccid = &fresh[world.rng.random_range(0..fresh.len())];
            env.emulator.inject(iccid, vec![Fault::DropAfterCommit]);
        }
        let kill_after = (world.rng.random_range(0..3) == 0)
            .then(|| world.rng.random_range(1..=fresh.len().max(1) as u64));
        let _ = std::fs::remove_file(&summary_path);
        let mut extra = vec![
            "--timeout",
            "400ms",
            "--max-attempts",
            "4",
            "--summary-json",
            summary_path.to_str().unwrap(),
        ];
        if world.rng.random_range(0..3) == 0 {
            extra.push("--retry-rejected");
        }
        let ran = run_once(&env, kill_after, &extra).await;
        history.push(format!(
            "run {run}: edits {edits:?}, flags {extra:?}, kill after {kill_after:?} creates: \
             killed {}, exit {:?}",
            ran.killed, ran.exit
        ));
        let rows = whole_rows(&env);
        let mut broken = check_always(&env, &mut world, &rows);
        if !ran.killed {
            let summary = read_summary(&summary_path);
            broken.extend(check_finished(&env, &world, &rows, ran.exit, summary));
        }
        assert!(
            broken.is_empty(),
            "{}",
            failure(
                &format!("seed {seed}, run {run}"),
                &broken,
                &history,
                &world,
                &ran
            )
        );
    }
}

/// The update flags of one run of the onboarding model.
#[derive(Clone, Copy, Debug)]
struct Onboard {
    /// `--fleet`, for the rows whose `fleet` cell is empty: one of the account's two Fleets,
    /// so such a SIM may be moved from one to the other (always with `--activate`, which
    /// needs a Fleet for every row).
    fleet: Option<&'static str>,
    activate: bool,
    wait: bool,
}

impl Onboard {
    fn args(&self) -> Vec<&'static str> {
        let mut args = Vec::new();
        if let Some(fleet) = self.fleet {
            args.extend(["--fleet", fleet]);
        }
        if self.activate {
            args.push("--activate");
        }
        if self.wait {
            args.extend(["--wait", "--wait-timeout", "5s"]);
        }
        args
    }
}

/// A fault an update request meets, drawn at random: the update-only ones (a success that
/// applied nothing, a scheduled change that falls back, a Fleet that shows only once the
/// change is done) and the ones any request can meet.
fn update_fault(rng: &mut StdRng) -> Fault {
    match rng.random_range(0..9) {
        0 => Fault::SuccessUnapplied,
        1 => Fault::ScheduledThenReverts,
        2 => Fault::FleetWithScheduledChange,
        3 => Fault::DropAfterCommit,
        4 => Fault::CutShortAfterCommit,
        5 => Fault::SlowAfterCommit(std::time::Duration::from_secs(1)),
        6 => Fault::TwilioError {
            status: 409,
            code: 83009,
        },
        7 => Fault::ServerError,
        _ => Fault::Unavailable { retry_after: None },
    }
}

/// A fault a create or a fetch meets, drawn at random.
fn other_fault(rng: &mut StdRng) -> Fault {
    match rng.random_range(0..5) {
        0 => Fault::DropAfterCommit,
        1 => Fault::CutShortAfterCommit,
        2 => Fault::SlowAfterCommit(std::time::Duration::from_secs(1)),
        3 => Fault::ServerError,
        _ => Fault::TooManyRequests { retry_after: None },
    }
}

/// The account's SIM as a check reads it: its status, and where a change is still
/// scheduled, the status it becomes.
fn status_of(sim: &SimRecord) -> String {
    match &sim.scheduled {
        Some((target, _)) => format!("scheduled (to {target})"),
        None => sim.status.clone(),
    }
}

/// After every run, killed or not: the account shows for each SIM only what some run asked
/// for that SIM (its own Fleet and unique name, a status change only once asked), so no
/// SIM was sent an update meant for another.
fn check_account_asked(env: &TestEnv, world: &World) -> Vec<String> {
    let mut broken = Vec::new();
    for n in 1..=world.next_sim {
        let iccid = sim_iccid(n);
        let Some(sim) = env.emulator.sim(&iccid) else {
            continue;
        };
        let asked = world.asked_fleets.get(&iccid);
        for fleet in [
            sim.fleet_sid.as_ref(),
            sim.scheduled_fleet.clone().flatten().as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if !asked.is_some_and(|asked| asked.contains(fleet)) {
                broken.push(format!(
                    "{iccid} is in Fleet {fleet} on the account; runs asked for {asked:?}"
                ));
            }
        }
        if let Some(name) = &sim.unique_name
            && Some(name) != unique_name_cell(n).as_ref()
        {
            broken.push(format!(
                "{iccid} is named {name:?} on the account; its row asks {:?}",
                unique_name_cell(n)
            ));
        }
        let changed = sim.status != "new" || sim.scheduled.is_some();
        if changed && !world.asked_active.contains(&iccid) {
            broken.push(format!(
                "{iccid} is {} on the account; no run asked to activate it",
                status_of(&sim)
            ));
        }
    }
    broken
}

/// A row without its `line` (a rewrite for a SIM that moved is not news about the SIM).
fn row_key(row: &HashMap<String, String>) -> String {
    let mut cells: Vec<(&String, &String)> = row.iter().filter(|(k, _)| *k != "line").collect();
    cells.sort();
    format!("{cells:?}")
}

/// After a run that finished: each SIM's last row that this run wrote and that says the SIM
/// is registered shows only what the account confirms (its Fleet, status and unique name
/// as the account shows them now) and what the run asked for.
fn check_rows_confirmed(
    env: &TestEnv,
    before: &[HashMap<String, String>],
    rows: &[HashMap<String, String>],
    flags: Onboard,
) -> Vec<String> {
    let mut broken = Vec::new();
    let mut old: HashMap<String, usize> = HashMap::new();
    for row in before {
        *old.entry(row_key(row)).or_default() += 1;
    }
    let mut last: HashMap<&str, (&HashMap<String, String>, bool)> = HashMap::new();
    for row in rows {
        let fresh = match old.get_mut(&row_key(row)) {
            Some(count) if *count > 0 => {
                *count -= 1;
                false
            }
            _ => true,
        };
        if row["outcome"] != "duplicate" && row["outcome"] != "invalid" {
            last.insert(row["iccid"].as_str(), (row, fresh));
        }
    }
    for (iccid, (row, fresh)) in last {
        if !fresh || !SUCCEEDED.contains(&row["outcome"].as_str()) {
            continue;
        }
        let Some(sim) = env.emulator.sim(iccid) else {
            continue; // check_always reports it
        };
        let line = &row["line"];
        let (status, fleet, name) = (&row["status"], &row["fleet_sid"], &row["unique_name"]);
        if !row["error_message"].is_empty() {
            broken.push(format!(
                "line {line}: the run finished, yet {iccid}'s last row says {:?}",
                row["error_message"]
            ));
        }
        if !fleet.is_empty() && Some(fleet) != sim.fleet_sid.as_ref() {
            broken.push(format!(
                "line {line}: {iccid} recorded in Fleet {fleet}; the account shows {:?}",
                sim.fleet_sid
            ));
        }
        if !name.is_empty() && Some(name) != sim.unique_name.as_ref() {
            broken.push(format!(
                "line {line}: {iccid} recorded as named {name}; the account shows {:?}",
                sim.unique_name
            ));
        }
        let scheduled = status == "scheduled";
        if !status.is_empty() && !scheduled && *status != sim.status {
            broken.push(format!(
                "line {line}: {iccid} recorded {status}; the account shows {}",
                status_of(&sim)
            ));
        }
        if scheduled && (flags.wait || !flags.activate) {
            broken.push(format!(
                "line {line}: {iccid} recorded scheduled by a run with {:?}",
                flags.args()
            ));
        }
        // What the run asked for is what the row shows as done (a `scheduled` answer may
        // show the Fleet only once the change is done).
        if flags.activate && !["active", "scheduled"].contains(&status.as_str()) {
            broken.push(format!(
                "line {line}: {iccid} is {}, status {status:?}, after a run with --activate",
                row["outcome"]
            ));
        }
        if let Some(asked) = World::fleet_asked(iccid, &flags)
            && !(scheduled && fleet.is_empty())
            && *fleet != fleet_sid_for(asked)
        {
            broken.push(format!(
                "line {line}: {iccid} is {} with Fleet {fleet:?}; the run asked for {asked}",
                row["outcome"]
            ));
        }
        if let Some(asked) = unique_name_cell(sim_number(iccid))
            && !scheduled
            && *name != asked
        {
            broken.push(format!(
                "line {line}: {iccid} is {} named {name:?}; the run asked for {asked}",
                row["outcome"]
            ));
        }
    }
    broken
}

/// After the final clean run: every SIM of the input is in the Fleet asked for, active (or,
/// without `--wait`, scheduled to become active), named as asked, and recorded so.
fn check_all_onboarded(env: &TestEnv, world: &World, flags: Onboard) -> Vec<String> {
    let mut broken = Vec::new();
    let last = {
        let mut last: HashMap<String, HashMap<String, String>> = HashMap::new();
        for row in whole_rows(env) {
            if row["outcome"] != "duplicate" {
                last.insert(row["iccid"].clone(), row);
            }
        }
        last
    };
    for iccid in world.input.iter().filter_map(Line::iccid) {
        let n = sim_number(iccid);
        let fleet = fleet_sid_for(World::fleet_asked(iccid, &flags).expect("--fleet passed"));
        let Some(sim) = env.emulator.sim(iccid) else {
            broken.push(format!("{iccid} is not on the account"));
            continue;
        };
        let active = sim.status == "active"
            || (!flags.wait && matches!(&sim.scheduled, Some((to, _)) if to == "active"));
        if sim.fleet_sid.as_ref() != Some(&fleet)
            || !active
            || sim.unique_name != unique_name_cell(n)
        {
            broken.push(format!(
                "{iccid} is {} in Fleet {:?} named {:?} on the account; asked: active in {fleet} named {:?}",
                status_of(&sim),
                sim.fleet_sid,
                sim.unique_name,
                unique_name_cell(n)
            ));
        }
        let recorded_status = if flags.wait {
            vec!["active"]
        } else {
            vec!["active", "scheduled"]
        };
        match last.get(iccid) {
            Some(row)
                if SUCCEEDED.contains(&row["outcome"].as_str())
                    && row["sid"] == sim.sid
                    && row["fleet_sid"] == fleet
                    && recorded_status.contains(&row["status"].as_str())
                    && row["unique_name"] == unique_name_cell(n).unwrap_or_default() => {}
            other => broken.push(format!(
                "{iccid} is recorded {:?}",
                other.map(|row| [
                    &row["outcome"],
                    &row["sid"],
                    &row["status"],
                    &row["fleet_sid"],
                    &row["unique_name"]
                ])
            )),
        }
    }
    broken
}

fn seed_and_runs(default_runs: usize) -> (u64, usize) {
    let seed: u64 = std::env::var("SUPERSIM_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(17);
    let runs: usize = std::env::var("SUPERSIM_MODEL_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_runs);
    (seed, runs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_promises_hold_across_runs_edits_kills_and_update_faults() {
    let (seed, runs) = seed_and_runs(12);
    let env = TestEnv::with_config(EmulatorConfig {
        seed,
        update_delay: std::time::Duration::from_millis(20),
        ..EmulatorConfig::default()
    })
    .await;
    let mut world = World::new(seed ^ 0x000b_0a4d, true);
    for _ in 0..12 {
        let line = world.new_sim_line();
        world.input.push(line);
    }
    let mut history = Vec::new();
    let summary_path = env.dir.path().join("last-run.json");
    let final_flags = Onboard {
        fleet: Some("field-devices"),
        activate: true,
        wait: world.rng.random_bool(0.5),
    };
    for run in 1..=runs + 1 {
        let clean = run == runs + 1;
        let mut edits: Vec<String> = Vec::new();
        let flags = if clean {
            // The final clean run: every code fixed, no fault, no kill.
            for line in &mut world.input {
                if let Line::Sim { iccid, code } = line {
                    *code = registration_code_for_sim(iccid);
                }
            }
            edits.push("fixed every code".to_string());
            final_flags
        } else {
            edits = (0..world.rng.random_range(0..3))
                .map(|_| world.edit())
                .collect();
            let activate = world.rng.random_bool(0.6);
            Onboard {
                fleet: (activate || world.rng.random_bool(0.5))
                    .then(|| ["field-devices", "bench"][world.rng.random_range(0..2)]),
                activate,
                wait: activate && world.rng.random_bool(0.4),
            }
        };
        world.write_input(&env);
        // What this run asks of each SIM, kept for the account check.
        let sims: Vec<String> = world
            .input
            .iter()
            .filter_map(Line::iccid)
            .map(String::from)
            .collect();
        for iccid in &sims {
            if let Some(fleet) = World::fleet_asked(iccid, &flags) {
                world
                    .asked_fleets
                    .entry(iccid.clone())
                    .or_default()
                    .insert(fleet_sid_for(fleet));
            }
            if flags.activate {
                world.asked_active.insert(iccid.clone());
            }
        }
        // This run's faults, drawn afresh: one or two on a share of the updates, fewer on
        // creates and fetches.
        env.emulator.clear_injected();
        let mut faults = Vec::new();
        if !clean {
            for iccid in &sims {
                if world.rng.random_bool(0.35) {
                    let count = world.rng.random_range(1..=2);
                    let drawn: Vec<Fault> =
                        (0..count).map(|_| update_fault(&mut world.rng)).collect();
                    faults.push(format!("update {iccid}: {drawn:?}"));
                    env.emulator.inject_update(iccid, drawn);
                }
                if world.rng.random_bool(0.15) {
                    let fault = other_fault(&mut world.rng);
                    faults.push(format!("create {iccid}: {fault:?}"));
                    env.emulator.inject(iccid, vec![fault]);
                }
                if world.rng.random_bool(0.1) {
                    let fault = other_fault(&mut world.rng);
                    faults.push(format!("fetch {iccid}: {fault:?}"));
                    env.emulator.inject_fetch(iccid, vec![fault]);
                }
            }
        }
        let kill_after = (!clean && world.rng.random_range(0..3) == 0)
            .then(|| world.rng.random_range(1..=2 * sims.len().max(1) as u64));
        let _ = std::fs::remove_file(&summary_path);
        let mut extra = vec![
            "--timeout",
            "400ms",
            "--max-attempts",
            "4",
            "--summary-json",
            summary_path.to_str().unwrap(),
        ];
        extra.extend(flags.args());
        let before = whole_rows(&env);
        let ran = run_once(&env, kill_after, &extra).await;
        history.push(format!(
            "run {run}: edits {edits:?}, flags {:?}, faults {faults:?}, kill after \
             {kill_after:?} requests: killed {}, exit {:?}",
            flags.args(),
            ran.killed,
            ran.exit
        ));
        let rows = whole_rows(&env);
        let mut broken = check_always(&env, &mut world, &rows);
        broken.extend(check_account_asked(&env, &world));
        if !ran.killed {
            let summary = read_summary(&summary_path);
            let finished = summary
                .as_ref()
                .is_some_and(|summary| summary["end"] == "finished");
            broken.extend(check_finished(&env, &world, &rows, ran.exit, summary));
            if finished {
                broken.extend(check_rows_confirmed(&env, &before, &rows, flags));
            }
            if clean {
                if !finished || ran.exit != Some(0) {
                    broken.push(format!(
                        "the clean run did not finish with exit 0 (exit {:?})",
                        ran.exit
                    ));
                }
                broken.extend(check_all_onboarded(&env, &world, flags));
            }
        }
        let which = if clean { " (the final clean run)" } else { "" };
        assert!(
            broken.is_empty(),
            "{}",
            failure(
                &format!("seed {seed}, run {run}{which}"),
                &broken,
                &history,
                &world,
                &ran
            )
        );
    }
}
