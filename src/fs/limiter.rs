//! How many background requests (statahead's HeadObjects) run at once. A fixed number is
//! wrong somewhere: far-away S3 needs hundreds in flight to hide its latency, while a
//! small or busy server only queues them, and every request a user waits for (a lookup,
//! a directory revalidation) then waits behind that queue. The limit follows the
//! round-trip times it sees, in the manner of TCP Vegas: while requests take about as
//! long as the fastest seen lately the limit grows; when they take longer, requests are
//! queueing at the server and the limit shrinks in proportion.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// Samples per window: after each, the base round trip (the fastest seen) may rise to
/// the window's fastest, by at most a quarter (the server may have slowed for good, or
/// the fastest sample was a fluke; a queue that never drains must not become the base).
const WINDOW: u32 = 500;

/// Queueing at the server that a user waiting behind it does not notice.
const TOLERATED_WAIT: Duration = Duration::from_millis(25);

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    /// The round trip of an unloaded server, as far as seen.
    base: Option<Duration>,
    /// Fastest round trip in the current window.
    window_min: Option<Duration>,
    samples: u32,
    /// Smoothed round trip.
    rtt: Option<f64>,
}

/// An adaptive concurrency limit; [`acquire`](Self::acquire) waits for a slot.
#[derive(Debug)]
pub struct Limiter {
    min: usize,
    max: usize,
    state: Mutex<State>,
    freed: Notify,
}

/// A slot held by one request; report its round trip with [`Slot::done`].
pub struct Slot {
    limiter: Option<Arc<Limiter>>,
}

impl Limiter {
    pub fn new(min: usize, initial: usize, max: usize) -> Self {
        let min = min.max(1);
        let max = max.max(min);
        Limiter {
            min,
            max,
            state: Mutex::new(State {
                limit: initial.clamp(min, max) as f64,
                in_flight: 0,
                base: None,
                window_min: None,
                samples: 0,
                rtt: None,
            }),
            freed: Notify::new(),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.state.lock().limit as usize
    }

    /// Wait until fewer than the limit are in flight, and take a slot.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            let notified = self.freed.notified();
            {
                let mut s = self.state.lock();
                if (s.in_flight as f64) < s.limit.floor() {
                    s.in_flight += 1;
                    return Slot {
                        limiter: Some(self.clone()),
                    };
                }
            }
            notified.await;
        }
    }

    /// Learn from one round trip (`None`: no request was needed, nothing to learn).
    fn sample(&self, rtt: Option<Duration>) {
        let mut s = self.state.lock();
        s.in_flight -= 1;
        if let Some(rtt) = rtt {
            s.samples += 1;
            s.window_min = Some(s.window_min.map_or(rtt, |m| m.min(rtt)));
            s.base = Some(s.base.map_or(rtt, |b| b.min(rtt)));
            if s.samples >= WINDOW {
                s.samples = 0;
                if let (Some(b), Some(w)) = (s.base, s.window_min.take()) {
                    s.base = Some(w.min(b.mul_f64(1.25)));
                }
            }
            let fastest = s.base.unwrap_or(rtt);
            let secs = rtt.as_secs_f64();
            let smooth = s.rtt.map_or(secs, |r| 0.9 * r + 0.1 * secs);
            s.rtt = Some(smooth);
            // Requests queue at the server once the round trip exceeds the fastest one.
            // Up to twice that, plus a wait no user notices, is tolerated: a deeper
            // pipeline costs the server less per request. A queue of about the limit's
            // square root is what lets the limit grow.
            let tolerated = fastest.as_secs_f64() * 2.0 + TOLERATED_WAIT.as_secs_f64();
            let gradient = (tolerated / smooth).clamp(0.5, 1.0);
            let target = s.limit * gradient + s.limit.sqrt();
            s.limit = (0.95 * s.limit + 0.05 * target).clamp(self.min as f64, self.max as f64);
        }
        let free = (s.limit.floor() as usize).saturating_sub(s.in_flight);
        drop(s);
        // One waiter per free slot (a grown limit frees more than the one returned).
        for _ in 0..free.min(self.max) {
            self.freed.notify_one();
        }
    }
}

impl Slot {
    /// Give the slot back with the round trip of the request it was for.
    pub fn done(mut self, rtt: Option<Duration>) {
        if let Some(l) = self.limiter.take() {
            l.sample(rtt);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(l) = self.limiter.take() {
            l.sample(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feed `n` round trips from a server that takes `base` to answer and serves `rate`
    /// requests per second: a burst that starts on an idle server, so the k-th request
    /// waits behind the k-1 before it, up to the limit in flight.
    fn run(l: &Arc<Limiter>, n: usize, base: f64, rate: f64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for k in 0..n {
            let slot = rt.block_on(l.acquire());
            let queued = k.min(l.limit()) as f64 / rate;
            slot.done(Some(Duration::from_secs_f64(base + queued)));
        }
    }

    #[test]
    fn shrinks_when_the_server_queues_and_grows_when_latency_hides_it() {
        // A slow local server: 2 ms a request, 400 requests per second. 256 in flight
        // would queue each for 640 ms.
        let slow = Arc::new(Limiter::new(4, 256, 256));
        run(&slow, 3000, 0.002, 400.0);
        // What queues there stays near the tolerated wait (2 x 2 ms + 25 ms: about 12
        // requests at 400 a second), not 256.
        assert!(slow.limit() <= 24, "limit {}", slow.limit());
        // Far-away S3: 50 ms a request, 20,000 per second: concurrency is what it takes.
        let far = Arc::new(Limiter::new(4, 16, 256));
        run(&far, 3000, 0.050, 20_000.0);
        assert!(far.limit() >= 200, "limit {}", far.limit());
    }

    #[test]
    fn never_leaves_its_bounds_and_counts_slots() {
        let l = Arc::new(Limiter::new(4, 1000, 64));
        assert_eq!(l.limit(), 64);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let slots: Vec<_> = (0..64).map(|_| rt.block_on(l.acquire())).collect();
        // The 65th waits.
        let more = rt.block_on(async { tokio::time::timeout(ms(20), l.acquire()).await.is_ok() });
        assert!(!more, "acquired past the limit");
        for s in slots {
            s.done(Some(ms(1000)));
        }
        assert!(l.limit() >= 4);
        // Slots dropped without a sample still come back.
        for _ in 0..10 {
            drop(rt.block_on(l.acquire()));
        }
        assert_eq!(l.state.lock().in_flight, 0);
    }
}
