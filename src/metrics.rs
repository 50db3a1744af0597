//! `register --metrics-file`: the end of a run in the Prometheus text format that
//! node_exporter's textfile collector reads, so a batch job run from cron is watched by the
//! monitoring already in place. Encoded by `prometheus-client`, written atomically (a new
//! file beside the target, renamed over it: the collector never reads half a file).
//!
//! Every run writes it, a failed or interrupted one too; a run that stopped before it
//! started writes its times and exit code, without row counts. Only counts, times and
//! outcome words: never an ICCID, a registration code or a credential.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::results::Outcome;
use crate::run::progress::Counts;
use crate::run::record::RunRecord;

/// Every metric's name starts with this.
pub(crate) const PREFIX: &str = "supersim_bulk";

type Value = Gauge<f64, AtomicU64>;
type ByLabel = Family<Vec<(String, String)>, Value>;

/// The metrics of `record`, as the text the textfile collector reads.
pub(crate) fn render(record: &RunRecord) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    let mut gauge = |name: &str, help: &str, value: f64| {
        let metric = Value::default();
        metric.set(value);
        registry.register(name, help, metric);
    };
    gauge(
        "last_run_start_timestamp_seconds",
        "When the last register run started, in seconds since the Unix epoch",
        unix_seconds(record.started_at),
    );
    gauge(
        "last_run_end_timestamp_seconds",
        "When the last register run ended, in seconds since the Unix epoch",
        unix_seconds(record.finished_at),
    );
    gauge(
        "last_run_duration_seconds",
        "How long the last register run took",
        record
            .finished_at
            .duration_since(record.started_at)
            .map_or(0.0, |took| took.as_secs_f64()),
    );
    gauge(
        "last_run_exit_code",
        "The last register run's exit code (0: every row it finished registered)",
        f64::from(record.exit_code),
    );
    gauge(
        "last_run_success",
        "1 when the last register run exited 0, else 0",
        if record.exit_code == crate::exit::SUCCESS {
            1.0
        } else {
            0.0
        },
    );
    if let Some(summary) = &record.summary {
        let concurrency = &summary.concurrency;
        gauge(
            "last_run_requests",
            "HTTP requests the last run sent: creates, retries and lookups",
            summary.requests as f64,
        );
        gauge(
            "last_run_throttled",
            "Answers of 429 (too many requests) the last run retried",
            summary.throttled as f64,
        );
        gauge(
            "last_run_needs_a_person_rows",
            "Rows the last run finished that a person has to look at",
            summary.needs_a_person.total as f64,
        );
        gauge(
            "last_run_concurrency_settled",
            "Requests in flight the last run's adaptive limit ended at",
            concurrency.settled as f64,
        );
        if let Some(limit) = concurrency.learned_limit {
            gauge(
                "last_run_account_limit",
                "The account's concurrency limit the last run found from 429s",
                limit as f64,
            );
        }
        registry.register(
            "last_run_rows",
            "Rows the last run finished, by outcome",
            by_outcome(&summary.rows_by_outcome()),
        );
        registry.register(
            "results_rows",
            "Every input row's latest outcome in the results file (this run's and earlier runs')",
            by_outcome(&summary.all_rows()),
        );
    }
    let info = ByLabel::default();
    info.get_or_create(&vec![
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("end".to_string(), record.end.clone()),
    ])
    .set(1.0);
    registry.register(
        "last_run_info",
        "The last register run's version and end word (finished, interrupted, ..., error)",
        info,
    );
    let mut text = String::new();
    // The Prometheus text format (no OpenMetrics `# EOF`): what the textfile collector reads.
    encode_registry(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// One gauge per outcome word, every word present (0 included) so a query never finds a
/// series missing.
fn by_outcome(counts: &Counts) -> ByLabel {
    let family = ByLabel::default();
    for outcome in Outcome::ALL {
        family
            .get_or_create(&vec![("outcome".to_string(), outcome.as_str().to_string())])
            .set(counts.get(outcome) as f64);
    }
    family
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// Writes the metrics of `record` to `path` atomically.
pub(crate) fn write(path: &Path, record: &RunRecord) -> std::io::Result<()> {
    crate::paths::write_atomically(path, render(record).as_bytes())
}
