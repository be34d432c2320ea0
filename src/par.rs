//! Fan-out across a handful of items (hosts, VMs, certificates): each item in its own scoped
//! thread, results in the items' order. A panic in one thread is re-raised in the caller.

/// Apply `f` to every item in parallel; the results come back in the order of `items`.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|item| s.spawn(move || f(item))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_order_of_the_items() {
        let items: Vec<u64> = (0..8).collect();
        let out = super::map(&items, |&i| {
            // Later items finish first.
            std::thread::sleep(std::time::Duration::from_millis(40 - 5 * i));
            i * 10
        });
        assert_eq!(out, [0, 10, 20, 30, 40, 50, 60, 70]);
    }
}
