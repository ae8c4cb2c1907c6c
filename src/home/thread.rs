//! A channel's thread (the button reader, the webhook sender) that is asked to stop and
//! waited for at most a while: a thread stuck in a call is left, never waited on forever.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

/// A running thread that stops on request.
#[derive(Debug)]
pub(crate) struct Stoppable {
    name: &'static str,
    stop: Sender<()>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
    wait: Duration,
}

impl Stoppable {
    /// Spawns `body` as thread `name`; `body` returns soon after its stop receiver gets a
    /// message. [`Stoppable::stop`] waits for it at most `wait`.
    pub fn spawn(
        name: &'static str,
        wait: Duration,
        body: impl FnOnce(Receiver<()>) + Send + 'static,
    ) -> std::io::Result<Stoppable> {
        let (stop, stop_rx) = crossbeam_channel::bounded(1);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                body(stop_rx);
                let _ = done_tx.send(());
            })?;
        Ok(Stoppable {
            name,
            stop,
            done,
            thread: Some(thread),
            wait,
        })
    }

    /// Asks the thread to stop and joins it if it ends within the wait; else leaves it.
    pub fn stop(&mut self) {
        let _ = self.stop.try_send(());
        if let Some(thread) = self.thread.take() {
            if self.done.recv_timeout(self.wait).is_ok() {
                let _ = thread.join();
            } else {
                log::warn!("{} thread did not stop in time; leaving it", self.name);
            }
        }
    }
}

impl Drop for Stoppable {
    fn drop(&mut self) {
        self.stop();
    }
}
