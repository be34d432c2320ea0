//! One way to wait for something: try, and try again every so often until it works or the time
//! is up. Every wait in kubicluster (a component's health, a Node registering, a VM answering
//! SSH, a pod running) goes through [`until`], so they all give up the same way: with the
//! words of the last failed attempt.

use std::time::{Duration, Instant};

/// Why an attempt did not succeed: not yet (try again), or a reason to give up at once.
#[derive(Debug)]
pub enum NotYet<E> {
    Again(E),
    Stop(E),
}

/// A plain error means "not yet".
impl<E> From<E> for NotYet<E> {
    fn from(e: E) -> Self {
        NotYet::Again(e)
    }
}

/// Run `attempt` now and then every `every` until it succeeds, says stop, or `timeout` has
/// passed since the first attempt; the error is that of the last attempt.
pub fn until<T, E>(
    timeout: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> Result<T, NotYet<E>>,
) -> Result<T, E> {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(NotYet::Stop(e)) => return Err(e),
            Err(NotYet::Again(e)) if start.elapsed() >= timeout => return Err(e),
            Err(NotYet::Again(_)) => std::thread::sleep(every),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_again_until_it_works_stops_when_told_and_gives_up_with_the_last_error() {
        let mut n = 0;
        let r: Result<u32, String> = until(Duration::from_secs(5), Duration::ZERO, || {
            n += 1;
            if n < 3 {
                Err(format!("attempt {n}").into())
            } else {
                Ok(n)
            }
        });
        assert_eq!(r, Ok(3));
        let mut n = 0;
        let r: Result<(), String> = until(Duration::from_secs(5), Duration::ZERO, || {
            n += 1;
            Err(NotYet::Stop(format!("stopped at {n}")))
        });
        assert_eq!(r, Err("stopped at 1".into()));
        let mut n = 0;
        let r: Result<(), String> =
            until(Duration::from_millis(30), Duration::from_millis(10), || {
                n += 1;
                Err(format!("attempt {n}").into())
            });
        let last = r.unwrap_err();
        assert!(n >= 3 && last == format!("attempt {n}"), "{last} after {n}");
    }
}
