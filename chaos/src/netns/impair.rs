//! Link impairment the kernel's netem would give (delay, jitter, loss), done by holding each
//! packet's verdict in an nfqueue: the packets stay in the kernel, only their ids come up.
//! Used because the lab must also run on kernels built without `sch_netem`.
//!
//! [`Impairment::admit`] is the pure part (what happens to one packet); [`Impairer`] is the
//! thread that applies it to one host's queue.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use nix::sched::{CloneFlags, setns};

use super::nfqueue::{Queue, Verdict};
use crate::scenario::Prng;

/// Delay, jitter and loss of one direction of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Added to every packet.
    pub delay: Duration,
    /// Each packet's delay is uniform in `delay ± jitter` (never negative).
    pub jitter: Duration,
    /// Probability in `0..=1` that a packet is dropped.
    pub loss: f64,
}

impl Impairment {
    /// Whether it changes anything.
    pub fn is_none(&self) -> bool {
        self.delay.is_zero() && self.jitter.is_zero() && self.loss <= 0.0
    }

    /// The fate of a packet queued at `now`: dropped (None) or released at the instant given.
    pub fn admit(&self, now: Instant, rng: &mut Prng) -> Option<Instant> {
        if self.loss > 0.0 && rng.between(0.0, 1.0) < self.loss {
            return None;
        }
        let j = self.jitter.as_secs_f64();
        let d = (self.delay.as_secs_f64() + rng.between(-j, j)).max(0.0);
        Some(now + Duration::from_secs_f64(d))
    }
}

/// A thread applying an [`Impairment`] to queue 0 of one network namespace.
#[derive(Debug)]
pub struct Impairer {
    params: Arc<Mutex<Impairment>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

/// Packets the kernel may hold for one host before it drops (like a device queue).
const QUEUE_LEN: u32 = 16_384;
/// How often the thread looks at its stop flag when idle.
const IDLE: Duration = Duration::from_millis(50);

impl Impairer {
    /// Start the thread inside the namespace at `netns` (a `/run/netns/NAME` file), bound to
    /// nfqueue 0 there. Returns once the queue is bound, so that rules sending packets to it
    /// can be added right after.
    pub fn start(netns: PathBuf, params: Impairment, seed: u64) -> Result<Self> {
        let params = Arc::new(Mutex::new(params));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let (p, s) = (params.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("impair".into())
            .spawn(move || -> Result<()> {
                let opened = (|| -> Result<Queue> {
                    let f = std::fs::File::open(&netns)
                        .with_context(|| format!("opening {}", netns.display()))?;
                    setns(&f, CloneFlags::CLONE_NEWNET).context("entering the namespace")?;
                    Queue::bind(0, QUEUE_LEN)
                })();
                let mut queue = match opened {
                    Ok(q) => {
                        let _ = ready_tx.send(Ok(()));
                        q
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("{e:#}")));
                        return Err(e);
                    }
                };
                run(&mut queue, &p, &s, Prng::new(seed))
            })
            .context("spawning the impairment thread")?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the impairment thread died"))??;
        Ok(Self {
            params,
            stop,
            thread: Some(thread),
        })
    }

    /// Change the impairment from now on.
    pub fn set(&self, params: Impairment) {
        if let Ok(mut p) = self.params.lock() {
            *p = params;
        }
    }
}

fn run(
    queue: &mut Queue,
    params: &Mutex<Impairment>,
    stop: &AtomicBool,
    mut rng: Prng,
) -> Result<()> {
    let mut held: BinaryHeap<Reverse<(Instant, u32)>> = BinaryHeap::new();
    let mut ids = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = held
            .peek()
            .map_or(IDLE, |Reverse((due, _))| due.saturating_duration_since(now))
            .min(IDLE);
        if !wait.is_zero() {
            queue.set_timeout(Some(wait))?;
            ids.clear();
            queue.recv_ids(&mut ids)?;
            let p = params.lock().map(|p| *p).unwrap_or_default();
            let now = Instant::now();
            for &id in &ids {
                match p.admit(now, &mut rng) {
                    None => queue.verdict(id, Verdict::Drop)?,
                    Some(due) if due <= now => queue.verdict(id, Verdict::Accept)?,
                    Some(due) => held.push(Reverse((due, id))),
                }
            }
        }
        let now = Instant::now();
        while let Some(Reverse((due, id))) = held.peek().copied() {
            if due > now {
                break;
            }
            held.pop();
            queue.verdict(id, Verdict::Accept)?;
        }
    }
    // Let what is held go: the namespace is about to be deleted anyway.
    for Reverse((_, id)) in held {
        queue.verdict(id, Verdict::Accept)?;
    }
    Ok(())
}

impl Drop for Impairer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "impairment thread failed"),
                Err(_) => tracing::warn!("impairment thread panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_jitter_and_loss_follow_the_parameters() {
        let now = Instant::now();
        let mut rng = Prng::new(3);
        let none = Impairment::default();
        assert!(none.is_none());
        assert_eq!(none.admit(now, &mut rng), Some(now));
        let p = Impairment {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(4),
            loss: 0.02,
        };
        let n = 20_000;
        let fates: Vec<Option<Instant>> = (0..n).map(|_| p.admit(now, &mut rng)).collect();
        let lost = fates.iter().filter(|f| f.is_none()).count() as f64 / n as f64;
        assert!((0.012..0.028).contains(&lost), "loss {lost}");
        let delays: Vec<f64> = fates
            .iter()
            .flatten()
            .map(|t| (*t - now).as_secs_f64() * 1e3)
            .collect();
        assert!(delays.iter().all(|d| (5.99..=14.01).contains(d)));
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        assert!((9.8..10.2).contains(&mean), "mean delay {mean}");
        // Jitter larger than the delay never gives a negative delay.
        let wide = Impairment {
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(5),
            loss: 0.0,
        };
        assert!((0..1000).all(|_| wide.admit(now, &mut rng).is_some_and(|t| t >= now)));
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let now = Instant::now();
        let p = Impairment {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(5),
            loss: 0.1,
        };
        let run = |seed| {
            let mut rng = Prng::new(seed);
            (0..100).map(|_| p.admit(now, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
