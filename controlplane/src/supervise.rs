//! Supervised control-plane tasks.
//!
//! The data plane runs on its own cores and keeps forwarding whatever happens on the control
//! core; the control plane's job after a failure is to come back, not to take the gateway down.
//! Two kinds of supervision:
//! - [`spawn`]: a background task (the posture refresher) that is started again, after a
//!   growing pause, whenever it panics or returns;
//! - [`Step`]: the responder loop's synchronous step, run under `catch_unwind` so a failure
//!   handling one event is contained and the loop goes on with the next.
//!
//! Both count their restarts and say why on the debug log.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// First pause before a restart; doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A task that ran this long before failing starts again at the first pause.
const HEALTHY: Duration = Duration::from_secs(30);

/// The text of a panic payload.
pub fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// A supervised background task; it runs as long as the runtime unless aborted.
pub struct Supervised {
    restarts: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<()>,
}

impl Supervised {
    /// Times the task was started again.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// A counter that follows [`Supervised::restarts`] (for `diagnose`).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.restarts.clone()
    }

    /// Stops the task and its supervisor.
    pub fn abort(&self) {
        self.handle.abort();
    }
}

/// Spawns `make()` on the current runtime and spawns it again whenever it panics or ends, after
/// 0.1 s, 0.2 s, … up to 5 s (back to 0.1 s once it has run 30 s). Call inside a runtime.
pub fn spawn<F, Fut>(name: &'static str, mut make: F, log: impl Fn(String) + Send + 'static) -> Supervised
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let restarts = Arc::new(AtomicU64::new(0));
    let counter = restarts.clone();
    let handle = tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = tokio::time::Instant::now();
            let why = match tokio::spawn(make()).await {
                Ok(()) => "ended".to_string(),
                Err(e) if e.is_panic() => format!("failed: {}", panic_message(&*e.into_panic())),
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
            };
            if started.elapsed() >= HEALTHY {
                backoff = FIRST_BACKOFF;
            }
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            log(format!("control-plane task {name} {why}; restarting it in {} ms (restart {n})", backoff.as_millis()));
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
    Supervised { restarts, handle }
}

/// The responder loop's guard: runs each step under `catch_unwind`.
#[derive(Debug, Default)]
pub struct Step {
    restarts: Arc<AtomicU64>,
}

impl Step {
    /// Runs `f`; when it panics returns the panic's message instead (and counts it). The state
    /// `f` touched is whatever the failed step left: the responder's tables stay consistent
    /// between calls, and a half-handled message is like a lost one (the peer retransmits).
    pub fn run<T>(&mut self, f: impl FnOnce() -> T) -> Result<T, String> {
        catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
            self.restarts.fetch_add(1, Ordering::Relaxed);
            panic_message(&*p)
        })
    }

    /// Failed steps so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// A counter that follows [`Step::restarts`] (for `diagnose`).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.restarts.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test(start_paused = true)]
    async fn failed_tasks_restart_with_backoff_and_keep_working() {
        let runs = Arc::new(AtomicU64::new(0));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (r, l) = (runs.clone(), lines.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sup = spawn(
            "refresher",
            move || {
                let n = r.fetch_add(1, Ordering::Relaxed);
                let tx = tx.clone();
                async move {
                    if n < 3 {
                        panic!("drill {n}");
                    }
                    // The fourth run works: it keeps reporting.
                    loop {
                        let _ = tx.send(n);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            },
            move |s| l.lock().unwrap().push(s),
        );
        assert_eq!(rx.recv().await, Some(3), "the task works again after three failures");
        assert_eq!(sup.restarts(), 3);
        let lines = lines.lock().unwrap().clone();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("refresher failed: drill 0; restarting it in 100 ms (restart 1)"), "{lines:?}");
        assert!(lines[2].contains("failed: drill 2; restarting it in 400 ms (restart 3)"), "{lines:?}");
        // Nothing more: a working task is left alone.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(sup.restarts(), 3);
        assert_eq!(runs.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_is_capped() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        let sup = spawn("flaky", || async { panic!("always") }, move |s| l.lock().unwrap().push(s));
        tokio::time::sleep(Duration::from_secs(30)).await;
        let lines = lines.lock().unwrap().clone();
        assert!(sup.restarts() >= 8, "{}", sup.restarts());
        assert!(lines.last().unwrap().contains("restarting it in 5000 ms"), "{lines:?}");
        sup.abort();
    }

    #[test]
    fn a_failed_step_is_contained_and_counted() {
        let mut step = Step::default();
        assert_eq!(step.run(|| 7), Ok(7));
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r: Result<(), String> = step.run(|| panic!("bad {}", 1));
        std::panic::set_hook(prev);
        assert_eq!(r, Err("bad 1".to_string()));
        assert_eq!(step.restarts(), 1);
        assert_eq!(step.run(|| "still works"), Ok("still works"));
    }
}
