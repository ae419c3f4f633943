//! How many threads a kernel may use.

/// The parallelism a caller grants a kernel.
///
/// `Rayon(n)` lets the kernel split its work into up to `n` parallel tasks; `Rayon(0)` means
/// "as many as the current rayon pool has threads". When `n` covers every core, the tasks run
/// on the compute team (see [`for_each_task`]), with the caller taking tasks too; otherwise,
/// or while the team serves another caller, on the current rayon pool (the software NPU's
/// compute pool). Kernels split through this module's functions, never through rayon
/// directly, so a kernel launched from a queue's worker wakes no parked thread. `None` runs
/// everything on the calling thread, which is what small problems want: waking a pool costs
/// more than it saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallelism {
    /// Run on the calling thread only.
    None,
    /// Use up to this many tasks on the current rayon pool (0: the pool's thread count).
    Rayon(usize),
}

impl Parallelism {
    /// The number of tasks this grant allows, at least 1.
    pub fn threads(self) -> usize {
        match self {
            Parallelism::None => 1,
            Parallelism::Rayon(0) => rayon::current_num_threads().max(1),
            Parallelism::Rayon(n) => n,
        }
    }
}

/// Runs `f` on every task, on up to `threads` threads.
///
/// Small kernels live or die by the hand-off: waking a parked worker costs tens of
/// microseconds on these machines, longer than a 64³ GEMM. When `threads` covers every core,
/// the tasks go to the compute team: one thread per further core that spins for a short while
/// ([`SPIN`]) after its last task before parking, while the caller claims tasks too, so a
/// parked helper never holds the caller up. When the team is busy with another caller's
/// tasks, or `threads` is smaller than the team, the tasks run on the current rayon pool.
///
/// A panic in a task is raised again on the caller once every task has finished.
pub fn for_each_task<T: Sync>(tasks: &[T], threads: usize, f: impl Fn(&T) + Sync) {
    if threads <= 1 || tasks.len() <= 1 {
        tasks.iter().for_each(f);
        return;
    }
    let team = team::get();
    if team.helpers() > 0 && team.helpers() < threads && tasks.len() <= team::MAX_TASKS {
        let g = |i: usize| f(&tasks[i]);
        if team.run(tasks.len(), &g) {
            return;
        }
    }
    use rayon::prelude::*;
    tasks.par_iter().with_max_len(1).for_each(&f);
}

/// Runs `f(i, &mut items[i])` for every item, on up to `threads` threads, as
/// [`for_each_task`] does: each item is handed to exactly one call.
pub fn for_each_mut<T: Send>(items: &mut [T], threads: usize, f: impl Fn(usize, &mut T) + Sync) {
    struct Base<T>(*mut T);
    // SAFETY: the pointer is only turned into `&mut items[i]` by the one call that owns task i.
    unsafe impl<T: Send> Sync for Base<T> {}
    impl<T> Base<T> {
        fn at(&self, i: usize) -> *mut T {
            self.0.wrapping_add(i)
        }
    }
    let base = Base(items.as_mut_ptr());
    let ids: Vec<usize> = (0..items.len()).collect();
    for_each_task(&ids, threads, |&i| {
        // SAFETY: `i < items.len()`, and `for_each_task` runs task i exactly once, so this is
        // the only reference to item i while `items` stays mutably borrowed by this call.
        let item = unsafe { &mut *base.at(i) };
        f(i, item);
    });
}

/// Runs `f(first_index, chunk)` over `out` cut into chunks of `chunk` elements (the last
/// may be shorter), on up to `threads` threads as [`for_each_task`] does: so a kernel that
/// splits its output runs on the compute team rather than waking a parked pool thread.
pub fn for_each_chunk_mut<T: Send>(
    out: &mut [T],
    chunk: usize,
    threads: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk = chunk.max(1);
    let mut chunks: Vec<&mut [T]> = out.chunks_mut(chunk).collect();
    for_each_mut(&mut chunks, threads, |i, c| f(i * chunk, c));
}

/// Runs `f(task, state)` for every task in `0..n` on up to `threads` workers (as
/// [`for_each_task`]), tasks taken in order by whichever worker is free. Each worker makes
/// its own state with `make` when it takes its first task, so a worker that comes late and
/// finds nothing left makes none.
pub fn for_each_with<S>(
    n: usize,
    threads: usize,
    make: impl Fn() -> S + Sync,
    f: impl Fn(usize, &mut S) + Sync,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = threads.min(n);
    if workers <= 1 {
        if n > 0 {
            let mut s = make();
            (0..n).for_each(|t| f(t, &mut s));
        }
        return;
    }
    let next = AtomicUsize::new(0);
    let worker_ids: Vec<usize> = (0..workers).collect();
    for_each_task(&worker_ids, threads, |_| {
        let mut s = None;
        loop {
            let t = next.fetch_add(1, Ordering::Relaxed);
            if t >= n {
                break;
            }
            f(t, s.get_or_insert_with(&make));
        }
    });
}

/// How long an idle team thread spins for new tasks before it parks.
pub const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

mod team {
    //! The compute team behind [`for_each_task`](super::for_each_task).

    use parking_lot::{Condvar, Mutex};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
    use std::sync::OnceLock;
    use std::time::Instant;

    /// The most tasks one call can hand the team (the task fields of `state` are 16 bits).
    pub const MAX_TASKS: usize = 0xffff;

    type TaskFn<'a> = dyn Fn(usize) + Sync + 'a;

    /// Shared by the caller that owns the team and its helper threads.
    pub struct Team {
        /// Set while one caller's tasks run; other callers fall back to rayon.
        busy: AtomicBool,
        /// Generation (bits 32..64), task count (16..32) and next unclaimed task (0..16).
        /// Claims are compare-exchanges on the whole word, so a thread that read an old
        /// generation can never claim a task of a newer one.
        state: AtomicU64,
        /// The caller's `&TaskFn`, valid while any task of the current generation is
        /// unfinished.
        func: AtomicPtr<()>,
        /// Tasks of the current generation that have finished.
        done: AtomicUsize,
        /// Set when a task of the current generation panicked.
        panicked: AtomicBool,
        /// Helpers parked (or about to park) on `wake`.
        sleepers: AtomicUsize,
        lock: Mutex<()>,
        wake: Condvar,
        helpers: usize,
    }

    fn unpack(s: u64) -> (u32, usize, usize) {
        (
            (s >> 32) as u32,
            ((s >> 16) & 0xffff) as usize,
            (s & 0xffff) as usize,
        )
    }

    fn pack(generation: u32, n: usize, next: usize) -> u64 {
        (u64::from(generation) << 32) | ((n as u64) << 16) | next as u64
    }

    /// The process-wide team, started on first use with one helper per further core.
    pub fn get() -> &'static Team {
        static TEAM: OnceLock<&'static Team> = OnceLock::new();
        TEAM.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let team: &'static Team = Box::leak(Box::new(Team {
                busy: AtomicBool::new(false),
                state: AtomicU64::new(0),
                func: AtomicPtr::new(core::ptr::null_mut()),
                done: AtomicUsize::new(0),
                panicked: AtomicBool::new(false),
                sleepers: AtomicUsize::new(0),
                lock: Mutex::new(()),
                wake: Condvar::new(),
                helpers: cores - 1,
            }));
            for i in 0..team.helpers {
                // A helper that fails to start leaves the team narrower, not wrong: the caller
                // claims every task no helper takes.
                let _ = std::thread::Builder::new()
                    .name(format!("knpu-compute-{i}"))
                    .spawn(move || team.helper());
            }
            team
        })
    }

    impl Team {
        /// Helper threads in the team.
        pub fn helpers(&self) -> usize {
            self.helpers
        }

        /// Runs tasks `0..n` of `f` on the caller and the helpers. Returns false, having run
        /// nothing, when another caller holds the team.
        pub fn run(&self, n: usize, f: &TaskFn<'_>) -> bool {
            debug_assert!(n <= MAX_TASKS);
            if self
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                return false;
            }
            let generation = unpack(self.state.load(Ordering::Relaxed)).0.wrapping_add(1);
            let fref: &TaskFn<'_> = f;
            self.func
                .store(&fref as *const &TaskFn<'_> as *mut (), Ordering::Relaxed);
            self.done.store(0, Ordering::Relaxed);
            // SeqCst pairs with the helpers' SeqCst `sleepers` increment and `state` load:
            // either this thread sees the sleeper or the sleeper sees the new generation.
            self.state.store(pack(generation, n, 0), Ordering::SeqCst);
            if self.sleepers.load(Ordering::SeqCst) > 0 {
                let _guard = self.lock.lock();
                self.wake.notify_all();
            }
            self.work(generation);
            let mut spins = 0u32;
            while self.done.load(Ordering::Acquire) < n {
                spins = spins.wrapping_add(1);
                if spins & 1023 == 0 {
                    std::thread::yield_now();
                } else {
                    core::hint::spin_loop();
                }
            }
            let panicked = self.panicked.swap(false, Ordering::Relaxed);
            self.busy.store(false, Ordering::Release);
            if panicked {
                panic!("a task of a parallel kernel panicked");
            }
            true
        }

        /// Claims and runs tasks of `generation` until none is left.
        fn work(&self, generation: u32) {
            let mut s = self.state.load(Ordering::Acquire);
            loop {
                let (g, n, next) = unpack(s);
                if g != generation || next >= n {
                    return;
                }
                match self.state.compare_exchange_weak(
                    s,
                    s + 1,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Err(now) => s = now,
                    Ok(_) => {
                        let f = self.func.load(Ordering::Relaxed) as *const &TaskFn<'_>;
                        // SAFETY: the claim succeeded on this generation with task `next` < n,
                        // so the caller that stored `func` (before publishing the generation,
                        // which the acquire claim synchronises with) is still waiting for this
                        // task and its closure is alive until `done` counts it.
                        let r = catch_unwind(AssertUnwindSafe(|| unsafe { (*f)(next) }));
                        if r.is_err() {
                            self.panicked.store(true, Ordering::Relaxed);
                        }
                        // The last touch of the caller's job: after this the caller may return.
                        self.done.fetch_add(1, Ordering::Release);
                        s = self.state.load(Ordering::Acquire);
                    }
                }
            }
        }

        /// A helper thread's life: wait for a new generation (spinning, then parked), work.
        fn helper(&self) {
            let mut seen = unpack(self.state.load(Ordering::Acquire)).0;
            loop {
                let start = Instant::now();
                let mut spins = 0u32;
                let generation = loop {
                    let g = unpack(self.state.load(Ordering::Acquire)).0;
                    if g != seen {
                        break g;
                    }
                    spins = spins.wrapping_add(1);
                    if spins & 255 != 0 {
                        core::hint::spin_loop();
                    } else if start.elapsed() <= super::SPIN {
                        // Give the core away if anything else wants it: only two cores.
                        std::thread::yield_now();
                    } else {
                        let mut guard = self.lock.lock();
                        self.sleepers.fetch_add(1, Ordering::SeqCst);
                        while unpack(self.state.load(Ordering::SeqCst)).0 == seen {
                            self.wake.wait(&mut guard);
                        }
                        self.sleepers.fetch_sub(1, Ordering::SeqCst);
                    }
                };
                seen = generation;
                self.work(generation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::for_each_task;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn run_counted(n: usize, threads: usize) {
        let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        let tasks: Vec<usize> = (0..n).collect();
        for_each_task(&tasks, threads, |&i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        for (i, h) in hits.iter().enumerate() {
            assert_eq!(
                h.load(Ordering::Relaxed),
                1,
                "task {i} of {n} ran a wrong number of times"
            );
        }
    }

    #[test]
    fn every_task_runs_once() {
        let reps = if cfg!(miri) { 2 } else { 50 };
        for n in [0, 1, 2, 3, 17, 1000] {
            for threads in [1, 2, 8] {
                for _ in 0..reps {
                    run_counted(n, threads);
                }
            }
        }
    }

    #[test]
    fn concurrent_callers_each_get_all_their_tasks() {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..if cfg!(miri) { 20 } else { 2000 } {
                        run_counted(1 + i % 9, 8);
                    }
                });
            }
        });
    }

    #[test]
    fn calls_after_the_team_parks_still_run() {
        for _ in 0..3 {
            std::thread::sleep(super::SPIN * 4);
            run_counted(4, 8);
        }
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_team_recovers() {
        let tasks: Vec<usize> = (0..8).collect();
        let r = std::panic::catch_unwind(|| {
            for_each_task(&tasks, 8, |&i| {
                if i == 5 {
                    panic!("task five fails");
                }
            })
        });
        assert!(r.is_err());
        run_counted(8, 8);
    }

    #[test]
    fn for_each_chunk_mut_covers_every_element_once_with_its_index() {
        let mut v = vec![0usize; 1003];
        super::for_each_chunk_mut(&mut v, 64, 8, |first, c| {
            for (j, x) in c.iter_mut().enumerate() {
                *x += first + j + 1;
            }
        });
        assert!(v.iter().enumerate().all(|(i, &x)| x == i + 1));
    }

    #[test]
    fn for_each_mut_hands_out_every_item_once() {
        let mut v = vec![0usize; 333];
        super::for_each_mut(&mut v, 8, |i, x| *x += i + 1);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i + 1));
    }

    #[test]
    fn for_each_with_runs_every_task_once_with_worker_state() {
        let hits: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
        let made = AtomicUsize::new(0);
        for threads in [1, 2, 8] {
            super::for_each_with(
                100,
                threads,
                || made.fetch_add(1, Ordering::Relaxed),
                |t, _| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                },
            );
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 3));
        assert!(made.load(Ordering::Relaxed) <= 1 + 2 + 8);
    }

    #[test]
    fn nested_calls_complete() {
        let tasks: Vec<usize> = (0..4).collect();
        let total = AtomicUsize::new(0);
        for_each_task(&tasks, 8, |_| {
            let inner: Vec<usize> = (0..3).collect();
            for_each_task(&inner, 8, |_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(total.load(Ordering::Relaxed), 12);
    }
}
