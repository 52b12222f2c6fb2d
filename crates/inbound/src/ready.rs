//! Answering on the spot what is already answered.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Polls `answering` once. A handler that has the answer at hand (a cache hit, a locally served
/// name, a rejected query) completes here, and the listener sends it without spawning a task;
/// otherwise the future comes back for a task of its own.
///
/// Polling with a no-op waker is sound because whoever takes the future over polls it again at
/// once, and a future registers the waker of its latest poll.
pub(crate) fn ready_now<F: Future>(mut answering: Pin<Box<F>>) -> Result<F::Output, Pin<Box<F>>> {
    match answering
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(answering),
    }
}
