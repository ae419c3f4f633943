//! How many threads a kernel may use.

/// The parallelism a caller grants a kernel.
///
/// `Rayon(n)` lets the kernel split its work into up to `n` parallel tasks on the rayon pool
/// the call runs in (the software NPU installs its compute pool first); `Rayon(0)` means
/// "as many as that pool has threads". `None` runs everything on the calling thread, which is
/// what small problems want: waking a pool costs more than it saves.
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
