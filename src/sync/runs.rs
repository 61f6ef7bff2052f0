//! Who runs cycles and how they are recorded: the process's worker id (it names claims and
//! runs), and the `sync_runs` row each cycle opens at its start and completes at its end.

use super::{CycleError, CycleReport};
use crate::store::Store;
use crate::store::runs::Trigger;

/// `host:pid:random`, fixed for the process: names its claims and its runs.
pub fn worker_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        // systemd services have no $HOSTNAME; the kernel always knows.
        // (/proc/sys is hidden under ProcSubset=pid: then /etc/hostname.)
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        format!(
            "{host}:{}:{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )
    })
}

/// A run whose completion could not be written (the database was down): written again before
/// the process's next run starts.
struct PendingFinish {
    run_id: i64,
    outcome: &'static str,
    error: Option<String>,
    report: CycleReport,
}

/// This process's completions still to write, oldest first.
static PENDING_FINISHES: std::sync::Mutex<Vec<PendingFinish>> = std::sync::Mutex::new(Vec::new());

fn pending_finishes() -> std::sync::MutexGuard<'static, Vec<PendingFinish>> {
    PENDING_FINISHES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records a cycle's start in `sync_runs`. A failure to record is logged, never fatal.
///
/// Called while holding the helpdesk lock, so no other worker runs a cycle of this helpdesk:
/// first the completions this process could not write are written now, then every run still
/// `running` is closed as `abandoned` (its worker died, was killed or lost the database).
pub async fn start_recorded(store: &Store, helpdesk_id: &str, trigger: Trigger) -> Option<i64> {
    write_pending_finishes(store).await;
    match store.abandon_running_runs(helpdesk_id, worker_id()).await {
        Ok(0) => {}
        Ok(closed) => tracing::warn!(
            closed,
            helpdesk_id,
            "closed runs left running by a worker that ended without completing them (sync_runs outcome abandoned)"
        ),
        Err(e) => tracing::warn!(
            error = format!("{e:#}"),
            "cannot close abandoned runs in sync_runs"
        ),
    }
    match store.start_run(helpdesk_id, trigger, worker_id()).await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot record the run in sync_runs"
            );
            None
        }
    }
}

/// Writes the completions that failed before; those that fail again stay pending.
async fn write_pending_finishes(store: &Store) {
    let pending = std::mem::take(&mut *pending_finishes());
    let mut still = Vec::new();
    for p in pending {
        match store
            .finish_run(p.run_id, p.outcome, p.error.as_deref(), &p.report)
            .await
        {
            Ok(()) => tracing::info!(
                run_id = p.run_id,
                outcome = p.outcome,
                "completed a run in sync_runs that could not be completed when it ended"
            ),
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    run_id = p.run_id,
                    "still cannot complete the run in sync_runs"
                );
                still.push(p);
            }
        }
    }
    pending_finishes().splice(0..0, still);
}

/// Records how a cycle ended; returns the outcome label written. When the database refuses
/// the completion, it is kept and written before the process's next run starts.
pub async fn finish_recorded(
    store: &Store,
    run_id: Option<i64>,
    result: &Result<CycleReport, CycleError>,
    stalled: bool,
) -> &'static str {
    let empty = CycleReport::default();
    let (outcome, error, report) = match result {
        Ok(r) if stalled => (
            "stalled",
            Some("no progress within sync.stall_timeout".to_owned()),
            r,
        ),
        Ok(r) if r.interrupted => ("interrupted", Some("stopped on request".to_owned()), r),
        Ok(r) => ("ok", partial_errors(r), r),
        Err(CycleError::Fatal { error, report }) => {
            ("fatal", Some(error.to_string()), report.as_ref())
        }
        Err(CycleError::Database(e)) => ("failed", Some(format!("{e:#}")), &empty),
    };
    if let Some(run_id) = run_id
        && let Err(e) = store
            .finish_run(run_id, outcome, error.as_deref(), report)
            .await
    {
        tracing::warn!(
            error = format!("{e:#}"),
            run_id,
            "cannot complete the run in sync_runs; written again before the next run"
        );
        pending_finishes().push(PendingFinish {
            run_id,
            outcome,
            error,
            report: report.clone(),
        });
    }
    outcome
}

/// What went wrong in an otherwise ok cycle (discovery, the catalog, the backlog), one line.
fn partial_errors(r: &CycleReport) -> Option<String> {
    let errors: Vec<&str> = r
        .discovery_error
        .iter()
        .chain(&r.report_errors)
        .map(String::as_str)
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}
