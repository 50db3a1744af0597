//! Tests of `summary`.

use super::*;

fn summary(this_run: &[Outcome], skipped: &[Outcome]) -> RunSummary {
    let mut counts = Counts::default();
    this_run.iter().for_each(|o| counts.add(*o));
    let mut earlier = Counts::default();
    skipped.iter().for_each(|o| earlier.add(*o));
    RunSummary::for_test(counts, earlier)
}

#[test]
fn the_json_never_writes_through_a_symlink_planted_at_its_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let temp = dir
        .path()
        .join(format!(".s.json.{}.tmp", std::process::id()));
    std::os::unix::fs::symlink(&victim, &temp).unwrap();
    let path = dir.path().join("s.json");
    write_json_atomically(&path, &serde_json::json!({"end": "finished"})).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert!(std::fs::read_to_string(&path).unwrap().contains("finished"));
    assert!(!temp.exists() && std::fs::symlink_metadata(&temp).is_err());
}

#[test]
fn exit_codes_follow_the_contract() {
    use Outcome::*;
    assert_eq!(
        summary(&[Registered, AlreadyRegistered, Duplicate], &[]).exit_code(),
        0
    );
    assert_eq!(summary(&[Registered, Invalid], &[]).exit_code(), 1);
    assert_eq!(summary(&[GaveUp, Rejected], &[]).exit_code(), 1);
    assert_eq!(summary(&[GaveUp, Registered], &[]).exit_code(), 75);
    let rerun = summary(&[], &[Rejected, Registered]);
    assert_eq!(
        rerun.exit_code(),
        0,
        "a refusal from an earlier run is that run's news, not this one's"
    );
    assert!(
        rerun.render().contains("1 row failed in earlier runs"),
        "{}",
        rerun.render()
    );
    assert_eq!(rerun.to_json().whole_file.0["rejected"], 1);
    assert_eq!(rerun.to_json().failed_in_earlier_runs, 1);
    assert_eq!(summary(&[Invalid], &[Rejected]).exit_code(), 1);
    assert_eq!(summary(&[], &[Registered]).exit_code(), 0);
    let mut ended = summary(&[Rejected], &[]);
    ended.end = EndReason::Interrupted;
    assert_eq!(ended.exit_code(), 130);
    ended.end = EndReason::CredentialsRefused(crate::api::Refusal {
        http_status: Some(403),
        code: Some(20003),
    });
    assert!(
        ended
            .render()
            .contains("the API refused the credentials (HTTP 403, Twilio error 20003)")
    );
    assert_eq!(ended.exit_code(), 2);
    ended.end = EndReason::Unreachable("cannot reach the API at http://x".into());
    assert_eq!(ended.exit_code(), 75);
    assert_eq!(ended.to_json().end, "unreachable");
    assert!(ended.render().contains("cannot reach the API at http://x"));
    ended.end = EndReason::WrongEndpoint("POST http://x/v1/Sims answered HTTP 404".into());
    assert_eq!(ended.exit_code(), 2);
    assert_eq!(ended.to_json().end, "wrong_endpoint");
    assert!(ended.to_json().reason.unwrap().contains("http://x/v1/Sims"));
    ended.end = EndReason::MaxFailures("x".into());
    assert_eq!(ended.exit_code(), 1);
    ended.end = EndReason::Internal("1 of 2 planned rows were neither written nor counted".into());
    assert_eq!(ended.exit_code(), 70);
    assert_eq!(ended.to_json().end, "internal_error");
    assert!(ended.render().contains("left for the next run"));
}

#[test]
fn an_interrupt_counts_sims_registered_with_their_update_to_do() {
    use Outcome::*;
    let mut ended = summary(&[Registered], &[]);
    ended.end = EndReason::Interrupted;
    ended.update_pending = 2;
    let text = ended.render();
    assert!(
        text.contains("registered          3 (2 of them with their update step still to do"),
        "{text}"
    );
    assert_eq!(ended.to_json().registered_update_pending, 2);
}

#[test]
fn json_counts_this_run_and_the_whole_file() {
    use Outcome::*;
    let json =
        serde_json::to_value(summary(&[Registered, GaveUp], &[Registered]).to_json()).unwrap();
    assert_eq!(json["this_run"]["registered"], 1);
    assert_eq!(json["whole_file"]["registered"], 2);
    assert_eq!(json["whole_file"]["gave_up"], 1);
    assert_eq!(json["skipped_as_finished"], 1);
    assert_eq!(json["exit_code"], 75);
    assert_eq!(json["end"], "finished");
}

#[test]
fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    std::fs::write(&path, "old").unwrap();
    write_json_atomically(&path, &serde_json::json!({"a": 1})).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["a"],
        1
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// An adaptive run's report that found a limit of 20, as the API's header let it see.
fn seen(
    header_seen: bool,
    header_on_admitted: bool,
    limit_counted: bool,
    other: Option<(f64, u32)>,
) -> ConcurrencyReport {
    ConcurrencyReport {
        ceiling: 100,
        adaptive: true,
        settled: 9,
        lowest: 4,
        highest: 18,
        learned_limit: Some(20),
        max_share: 1.0,
        header_seen,
        header_on_admitted,
        limit_counted,
        other_in_flight: other.map(|(mean, _)| mean),
        other_peak: other.map(|(_, peak)| peak),
        throttled_share: 0.01,
        peak_in_flight: 18,
    }
}

#[test]
fn the_other_traffic_line_says_what_the_header_convention_lets_the_run_see() {
    let report = |header_seen, header_on_admitted, other| {
        seen(header_seen, header_on_admitted, header_seen, other)
    };
    let every = report(true, true, Some((5.8, 12))).describe(3);
    assert!(
        every.contains("5.8 requests in flight on average, 12 at most")
            && !every.contains("--max-share"),
        "{every}"
    );
    // On 429s only, a count shows the account full: what the run left the other app.
    let on_429 = report(true, false, Some((11.0, 13))).describe(3);
    assert!(
        on_429.contains("on 429s only") && on_429.contains("--max-share leaves it room"),
        "{on_429}"
    );
    let alone_on_429 = report(true, false, Some((0.0, 0))).describe(3);
    assert!(
        alone_on_429.contains("0.0 requests in flight on average, 0 at most"),
        "{alone_on_429}"
    );
    let never = report(false, false, None).describe(3);
    assert!(
        never.contains("not visible") && never.contains("--max-share leaves it room"),
        "{never}"
    );
}

#[test]
fn the_limit_found_is_the_accounts_only_when_a_count_showed_it() {
    let counted = seen(true, false, true, Some((0.0, 0))).describe(3);
    assert!(counted.contains("account limit found: 20"), "{counted}");
    // A server that counts on 429s only, alone and over a network: the room the refused
    // requests showed is this run's, larger than the account's limit.
    let room = seen(true, false, false, Some((0.0, 0))).describe(3);
    assert!(
        room.contains("room found: 20") && !room.contains("account limit"),
        "{room}"
    );
    let never = seen(false, false, false, None).describe(3);
    assert!(never.contains("room found: 20"), "{never}");
}
