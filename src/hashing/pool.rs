//! Runs hashing on tokio's blocking threads, at most one job per core at a
//! time, so argon2 never stalls the async executor and a burst of logins
//! cannot allocate memory for hundreds of argon2 instances at once.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{Argon2Params, HashError, Secret};

/// A bounded pool for CPU-heavy hashing. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HashPool {
    permits: Arc<Semaphore>,
}

impl Default for HashPool {
    /// One job per available core.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        HashPool::new(cores)
    }
}

impl HashPool {
    pub fn new(max_parallel: usize) -> HashPool {
        HashPool {
            permits: Arc::new(Semaphore::new(max_parallel.max(1))),
        }
    }

    /// Runs `job` on a blocking thread once a slot is free.
    pub async fn run<T, F>(&self, job: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = self.permits.clone().acquire_owned().await;
        match tokio::task::spawn_blocking(job).await {
            Ok(value) => value,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }

    pub async fn hash(&self, password: Secret, params: Argon2Params) -> Result<String, HashError> {
        self.run(move || super::hash_password(&password, params))
            .await
    }

    pub async fn verify(&self, password: Secret, hash: String) -> Result<bool, HashError> {
        self.run(move || super::verify_password(&password, &hash))
            .await
    }
}
