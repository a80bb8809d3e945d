//! The bounded queue between the hub and one overlay's writer. Smaller than a
//! general channel (an idle overlay holds an empty `VecDeque` and one waker),
//! because a node keeps thousands of them: `try_send` refuses past the
//! capacity (the hub then evicts the slow client), `force_send` always queues
//! (close frames at shutdown or rotation), `close` ends the writer.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// What a full or closed outbox answers to `try_send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    Full,
    Closed,
}

struct State<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    closed: bool,
}

struct Shared<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The hub's end.
pub struct Sender<T>(Arc<Shared<T>>);
/// The writer's end.
pub struct Receiver<T>(Arc<Shared<T>>);

pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        capacity: capacity.max(1),
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waker: None,
            closed: false,
        }),
    });
    (Sender(Arc::clone(&shared)), Receiver(shared))
}

impl<T> Sender<T> {
    pub fn try_send(&self, item: T) -> Result<(), SendError> {
        self.push(item, false)
    }

    /// Queues even past the capacity (a close frame must get through).
    pub fn force_send(&self, item: T) -> Result<(), SendError> {
        self.push(item, true)
    }

    fn push(&self, item: T, force: bool) -> Result<(), SendError> {
        let waker = {
            let mut st = self.0.lock();
            if st.closed {
                return Err(SendError::Closed);
            }
            if !force && st.queue.len() >= self.0.capacity {
                return Err(SendError::Full);
            }
            st.queue.push_back(item);
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// No more items; the receiver drains what is queued, then sees the end.
    pub fn close(&self) {
        let waker = {
            let mut st = self.0.lock();
            st.closed = true;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> Receiver<T> {
    /// The next item, or `None` once closed and drained.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| {
            let mut st = self.0.lock();
            if let Some(item) = st.queue.pop_front() {
                if st.queue.is_empty() && st.queue.capacity() > 4 {
                    // A burst grew the buffer; an idle overlay should not keep it.
                    st.queue.shrink_to(4);
                }
                return Poll::Ready(Some(item));
            }
            if st.closed {
                return Poll::Ready(None);
            }
            match &st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => st.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    pub fn is_closed(&self) -> bool {
        self.0.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_force_close_and_drain() {
        let (tx, rx) = bounded(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(SendError::Full));
        assert_eq!(tx.force_send(4), Ok(()));
        tx.close();
        assert_eq!(tx.try_send(5), Err(SendError::Closed));
        smol::block_on(async {
            assert_eq!(rx.recv().await, Some(1));
            assert_eq!(rx.recv().await, Some(2));
            assert_eq!(rx.recv().await, Some(4));
            assert_eq!(rx.recv().await, None);
        });
    }

    #[test]
    fn wakes_a_waiting_receiver_and_ends_on_drop() {
        let (tx, rx) = bounded::<u32>(16);
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.try_send(7).unwrap();
        });
        smol::block_on(async {
            assert_eq!(rx.recv().await, Some(7));
            t.join().unwrap();
            assert_eq!(rx.recv().await, None, "sender dropped");
        });
    }
}
