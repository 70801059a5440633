//! The hashing pool: a fixed set of threads that run every argon2 (and
//! legacy) hash, behind a bounded admission, so that hashing never stalls the
//! async executor and neither a burst of logins nor clients that hang up can
//! run more hashes, or hold more argon2 memory, than there are threads.
//!
//! Admission is counted, not queued without end: at most `threads + queue`
//! requests hold a slot at a time, and [`HashPool::admit`] refuses at once
//! when all are taken, so the API can answer `503` instead of letting
//! latency grow. A slot is held by the request *and* by every job it has
//! handed to the threads, so a caller that disconnects does not free it
//! while its hash still runs; a queued job whose caller is gone is skipped
//! without hashing.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Argon2Params, HashError, Secret};

type Job = Box<dyn FnOnce() + Send>;

/// How many hashing threads and queued requests a pool has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    /// Hashing threads: hashes that run at once (default: one per core).
    pub threads: usize,
    /// Admitted requests beyond those running (default: 64 per thread,
    /// about a second of waiting at the default argon2id on this machine).
    pub queue: usize,
}

impl Default for PoolSize {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        PoolSize {
            threads,
            queue: 64 * threads,
        }
    }
}

/// What the pool counts, for `/metrics`.
#[derive(Debug, Default, Clone)]
struct PoolMetrics {
    /// Hashes run to the end.
    hashed: Counter,
    /// argon2 blocks (1 KiB, per pass) the hashes and verifies filled: the
    /// work done, whatever the time it took on this machine.
    argon2_blocks: Counter,
    /// Requests refused because every slot was taken.
    shed: Counter,
    /// Queued jobs dropped because their caller had gone.
    abandoned: Counter,
    /// Slots taken now.
    admitted: Gauge,
}

#[derive(Debug)]
struct Shared {
    jobs: Mutex<mpsc::Sender<Job>>,
    size: PoolSize,
    admitted: AtomicUsize,
    metrics: PoolMetrics,
}

/// One admitted request's place in the pool; freed when the request and
/// all of its jobs are done.
#[derive(Debug)]
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.admitted.dec();
    }
}

/// A handle on the hashing pool. Cheap to clone. A handle from
/// [`HashPool::admit`] holds a slot and runs its jobs in it; any other
/// handle takes a slot per job.
#[derive(Clone, Debug)]
pub struct HashPool {
    shared: Arc<Shared>,
    slot: Option<Arc<Slot>>,
}

/// Every slot of the pool is taken: the caller should retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the hashing pool is full; retry later")]
pub struct Overloaded;

impl Default for HashPool {
    fn default() -> Self {
        HashPool::new(PoolSize::default())
    }
}

impl HashPool {
    /// Starts `size.threads` hashing threads (`credshift-hash-N`); they end
    /// when the last handle is dropped.
    pub fn new(size: PoolSize) -> HashPool {
        let size = PoolSize {
            threads: size.threads.max(1),
            queue: size.queue,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..size.threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("credshift-hash-{i}"))
                .spawn(move || {
                    batch_scheduling();
                    work(&rx)
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a hashing thread");
            }
        }
        HashPool {
            shared: Arc::new(Shared {
                jobs: Mutex::new(tx),
                size,
                admitted: AtomicUsize::new(0),
                metrics: PoolMetrics::default(),
            }),
            slot: None,
        }
    }

    pub fn size(&self) -> PoolSize {
        self.shared.size
    }

    /// Takes a slot for one request, or says at once that there is none.
    /// The returned handle runs all of the request's jobs in that slot.
    pub fn admit(&self) -> Result<HashPool, Overloaded> {
        if let Some(slot) = &self.slot {
            return Ok(HashPool {
                shared: self.shared.clone(),
                slot: Some(slot.clone()),
            });
        }
        let shared = &self.shared;
        let limit = shared.size.threads + shared.size.queue;
        let taken = shared
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
        if taken.is_err() {
            shared.metrics.shed.inc();
            return Err(Overloaded);
        }
        shared.metrics.admitted.inc();
        Ok(HashPool {
            shared: shared.clone(),
            slot: Some(Arc::new(Slot(shared.clone()))),
        })
    }

    /// Whether every slot is taken now; if so the refusal is counted as
    /// shed. For refusing a request before its body is even read: a
    /// request that passes still needs [`HashPool::admit`].
    pub fn shed_if_full(&self) -> bool {
        let shared = &self.shared;
        let full =
            shared.admitted.load(Ordering::Acquire) >= shared.size.threads + shared.size.queue;
        if full {
            shared.metrics.shed.inc();
        }
        full
    }

    /// Runs `job` on a hashing thread, in this handle's slot (or a new one).
    pub async fn run<T, F>(&self, job: F) -> Result<T, Overloaded>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let admitted = self.admit()?;
        let slot = admitted.slot.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let hashed = self.shared.metrics.hashed.clone();
        let abandoned = self.shared.metrics.abandoned.clone();
        let job: Job = Box::new(move || {
            // The slot lives until the job is over, whatever the caller does.
            let _slot = slot;
            if tx.is_closed() {
                abandoned.inc();
                return;
            }
            let value = job();
            hashed.inc();
            let _ = tx.send(value);
        });
        let sent = match self.shared.jobs.lock() {
            Ok(jobs) => jobs.send(job).is_ok(),
            Err(poisoned) => poisoned.into_inner().send(job).is_ok(),
        };
        if !sent {
            return Err(Overloaded);
        }
        // A closed channel without a value: the job panicked (the thread
        // survives it, see `work`) or every thread is gone.
        rx.await.map_err(|_| Overloaded)
    }

    pub async fn hash(&self, password: Secret, params: Argon2Params) -> Result<String, HashError> {
        let blocks = self.shared.metrics.argon2_blocks.clone();
        self.run(move || {
            let hashed = super::hash_password(&password, params);
            blocks.inc_by(u64::from(params.memory_kib) * u64::from(params.iterations));
            hashed
        })
        .await?
    }

    pub async fn verify(&self, password: Secret, hash: String) -> Result<bool, HashError> {
        let blocks = self.shared.metrics.argon2_blocks.clone();
        self.run(move || {
            let verified = super::verify_password(&password, &hash);
            blocks.inc_by(super::argon2_blocks(&hash));
            verified
        })
        .await?
    }

    /// Registers the pool's counters as `<prefix>_hash_*`.
    pub fn register(&self, registry: &mut Registry) {
        let m = &self.shared.metrics;
        registry.register(
            "hash_runs",
            "Hashes (argon2 and legacy) run by the hashing threads",
            m.hashed.clone(),
        );
        registry.register(
            "hash_argon2_blocks",
            "argon2 blocks (1 KiB per pass) filled by hashes and verifies: the work done",
            m.argon2_blocks.clone(),
        );
        registry.register(
            "hash_shed",
            "Requests answered 503 because every hashing slot was taken",
            m.shed.clone(),
        );
        registry.register(
            "hash_abandoned",
            "Queued hashes skipped because their caller had gone",
            m.abandoned.clone(),
        );
        registry.register(
            "hash_slots_taken",
            "Hashing slots (running and queued requests) taken now",
            m.admitted.clone(),
        );
    }
}

/// Tells Linux that this thread is CPU-bound (SCHED_BATCH): it is not
/// preempted on every wake-up of the API's other threads, so a hash keeps
/// its core and caches for longer. Best effort; other systems ignore it.
// The crate's one `unsafe`: a libc call with no safe wrapper in std.
#[allow(unsafe_code)]
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sets this thread's own policy with a valid parameter.
        let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    }
}

/// A hashing thread: runs jobs until every handle is gone. A panicking
/// job loses its answer (its caller sees the channel closed), not the thread.
fn work(jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn pool(threads: usize, queue: usize) -> HashPool {
        HashPool::new(PoolSize { threads, queue })
    }

    #[tokio::test]
    async fn admits_threads_plus_queue_and_sheds_the_rest() {
        let p = pool(2, 3);
        let held: Vec<_> = (0..5).map(|_| p.admit().expect("a free slot")).collect();
        assert_eq!(p.admit().unwrap_err(), Overloaded);
        assert!(p.shed_if_full());
        assert_eq!(p.shared.metrics.shed.get(), 2);
        drop(held);
        assert!(!p.shed_if_full());
        assert!(p.admit().is_ok());
    }

    /// A job whose caller has gone keeps its slot until it is over, so
    /// hanging up cannot start more hashes than there are threads.
    #[tokio::test]
    async fn a_cancelled_caller_keeps_its_slot_until_the_job_ends() {
        let p = pool(1, 0);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let handle = p.admit().expect("slot");
        let call = tokio::spawn(async move {
            handle
                .run(move || {
                    s.fetch_add(1, Ordering::SeqCst);
                    let _ = release_rx.recv();
                })
                .await
        });
        while started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        call.abort();
        let _ = call.await;
        assert_eq!(p.admit().unwrap_err(), Overloaded, "slot freed too early");
        release_tx.send(()).expect("job waiting");
        for _ in 0..200 {
            if p.admit().is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("slot never freed after the job ended");
    }

    /// A queued job whose caller is gone before it starts is not run.
    #[tokio::test]
    async fn queued_jobs_of_gone_callers_are_skipped() {
        let p = pool(1, 4);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let ran = Arc::new(AtomicUsize::new(0));
        let blocker = p.clone();
        let first = tokio::spawn(async move {
            blocker
                .run(move || {
                    let _ = release_rx.recv();
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = ran.clone();
        let queued = p.clone();
        let second =
            tokio::spawn(async move { queued.run(move || r.fetch_add(1, Ordering::SeqCst)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        second.abort();
        let _ = second.await;
        release_tx.send(()).expect("first job waiting");
        first.await.expect("join").expect("ran");
        // One more job through the single thread orders us after the skip.
        p.run(|| ()).await.expect("ran");
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        assert_eq!(p.shared.metrics.abandoned.get(), 1);
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_take_its_thread() {
        let p = pool(1, 0);
        assert_eq!(
            p.run(|| -> u8 { panic!("boom") }).await.unwrap_err(),
            Overloaded
        );
        assert_eq!(p.run(|| 7).await, Ok(7));
    }
}
