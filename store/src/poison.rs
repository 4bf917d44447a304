//! Porter's one policy for poisoned locks, for every crate of the workspace.
//!
//! A `std::sync` lock is poisoned when a thread panics while holding it. Porter's rule is that
//! a panic in one task never takes down the others: the panic is logged where it happens (the
//! task's join, the writer's `catch_unwind`), and every later user of the lock takes the guard
//! as it is instead of panicking in turn. Porter's critical sections are short (a slot set or
//! taken, a counter bumped, an entry updated), so what a panic leaves behind is at worst one
//! update short, where failing every later user would stop the service for good.
//!
//! So: never `.lock().unwrap()` or `.expect(..)` on a `std::sync` lock; write
//! `.lock().recover()` (likewise `.read()`, `.write()`, and a `Condvar`'s waits).

use std::sync::{LockResult, PoisonError};

/// Takes a lock's guard whether or not the lock is poisoned (see the module's policy).
///
/// ```
/// use porter_store::Recover as _;
/// let counter = std::sync::Mutex::new(0);
/// *counter.lock().recover() += 1;
/// let table = std::sync::RwLock::new(vec![1]);
/// assert_eq!(table.read().recover().len(), 1);
/// ```
pub trait Recover<G> {
    /// The guard, recovered from the poison a panicked holder left.
    fn recover(self) -> G;
}

impl<G> Recover<G> for LockResult<G> {
    fn recover(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::Recover as _;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_panicked_holder_leaves_the_value_usable() {
        let shared = Arc::new(Mutex::new(1));
        let holder = shared.clone();
        let panicked = std::thread::spawn(move || {
            let mut guard = holder.lock().recover();
            *guard = 2;
            panic!("a bug while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.is_poisoned());
        *shared.lock().recover() += 1;
        assert_eq!(*shared.lock().recover(), 3);
    }
}
