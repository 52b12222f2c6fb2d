//! Which listener worker thread the current code runs on.
//!
//! The Do53 and DoH listeners run on one worker thread per core, each with a
//! single-threaded runtime of its own (see dohgate-inbound's `workers` module). A query read on
//! such a thread is answered on it from start to end: state the query path keeps per thread
//! (the upstream socket pools) is picked with [`current`], so a query's upstream answer wakes a
//! task on the same thread instead of handing it across threads. Code on any other thread (the
//! shared multi-threaded runtime: accept loops, admin) reads worker 0.

use std::cell::Cell;
use std::num::NonZeroUsize;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as listener worker `index` (counting from 1; 0 is "shared").
pub fn set_current(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// The listener worker the calling thread is, or 0 outside the listener worker threads.
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// The number of threads to run when the configuration leaves it open: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// How many per-thread slots state kept per worker needs: one per worker thread by default,
/// plus slot 0 for the shared runtime. More workers than that share slots, which is correct
/// but hands some answers across threads.
pub fn slots() -> usize {
    default_threads() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_has_its_own_worker_index() {
        set_current(3);
        assert_eq!(current(), 3);
        let other = std::thread::spawn(current).join().expect("thread");
        assert_eq!(other, 0);
        assert!(slots() >= 2);
    }
}
