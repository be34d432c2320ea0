//! Fan-out over nodes with tokio: each node's work runs on the blocking pool (ssh2 and virt are
//! blocking C bindings), at most `concurrency` at a time, each under a deadline. Results come
//! back per node as they finish; one node failing never stops the others' work halfway.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Run `f(item)` for every item; `on_done` sees each result on the calling thread as it
/// arrives. Returns the results in the items' order. A task that outlives its deadline is
/// reported as `Err(deadline)`; the blocking work itself runs on to its end (never cut in half).
pub fn map<T, R>(
    items: Vec<T>,
    concurrency: usize,
    deadline: Duration,
    f: impl Fn(&T) -> R + Send + Sync + 'static,
    mut on_done: impl FnMut(&T, &Result<R, Duration>),
) -> Vec<(T, Result<R, Duration>)>
where
    T: Clone + Send + Sync + 'static,
    R: Send + 'static,
{
    let rt = runtime();
    let f = Arc::new(f);
    rt.block_on(async {
        let sem = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut set = JoinSet::new();
        for (i, item) in items.iter().cloned().enumerate() {
            let (sem, f) = (sem.clone(), f.clone());
            set.spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore open");
                let work = tokio::task::spawn_blocking(move || {
                    let r = f(&item);
                    (item, r)
                });
                match tokio::time::timeout(deadline, work).await {
                    Ok(Ok((_, r))) => (i, Ok(r)),
                    Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
                    Err(_) => (i, Err(deadline)),
                }
            });
        }
        let mut out: Vec<Option<Result<R, Duration>>> = (0..items.len()).map(|_| None).collect();
        while let Some(done) = set.join_next().await {
            let (i, r) = done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            on_done(&items[i], &r);
            out[i] = Some(r);
        }
        items
            .into_iter()
            .zip(out)
            .map(|(t, r)| (t, r.expect("every task reported")))
            .collect()
    })
}

/// The process's one tokio runtime (fan-outs, signals), made on first use. Small and
/// multi-threaded: the work is on the blocking pool, so two workers suffice.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(64)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn all_nodes_run_at_once_and_results_keep_their_order() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let out = map(
            (0..8u32).collect(),
            8,
            Duration::from_secs(30),
            move |&i| {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                // Wait until all eight run together (or give up after a while).
                let start = Instant::now();
                while p.load(Ordering::SeqCst) < 8 && start.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                r.fetch_sub(1, Ordering::SeqCst);
                i * 2
            },
            |_, _| {},
        );
        assert_eq!(
            peak.load(Ordering::SeqCst),
            8,
            "every node ran at the same time"
        );
        let values: Vec<u32> = out.iter().map(|(_, r)| *r.as_ref().unwrap()).collect();
        assert_eq!(values, [0, 2, 4, 6, 8, 10, 12, 14]);
    }

    #[test]
    fn concurrency_bounds_and_deadline_reports() {
        let out = map(
            vec![1u64, 2, 3],
            1,
            Duration::from_millis(150),
            |&i| std::thread::sleep(Duration::from_millis(if i == 2 { 400 } else { 10 })),
            |_, _| {},
        );
        assert!(out[0].1.is_ok() && out[2].1.is_ok());
        assert_eq!(out[1].1, Err(Duration::from_millis(150)));
    }
}
