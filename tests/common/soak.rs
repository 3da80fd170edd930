//! Run counts and reproducible randomness: the full counts under `SBX_SOAK=1` (what
//! `benches/soak.sh` sets), reduced ones otherwise; a seeded generator that prints its seed.

/// Whether the full counts run (`SBX_SOAK=1`, as benches/soak.sh sets).
pub fn soak() -> bool {
    std::env::var("SBX_SOAK").is_ok_and(|v| v == "1")
}

/// Whether this is CI (`CI=true`).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `SBX_SEED` or the clock; prints the seed for `what`, to replay a failure.
    pub fn new(what: &str) -> Rng {
        let seed = std::env::var("SBX_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{what}: seed {seed} (replay with SBX_SEED={seed})");
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The number of iterations of `what`: `full` (the count) under `SBX_SOAK=1`, else
/// `reduced`, saying so in the output.
pub fn count(what: &str, full: usize, reduced: usize) -> usize {
    if soak() {
        eprintln!("{what}: full count {full} (SBX_SOAK=1)");
        full
    } else {
        let why = if ci() { " under CI=true" } else { "" };
        eprintln!(
            "{what}: {reduced} runs (reduced from {full}{why}; SBX_SOAK=1 or benches/soak.sh \
             runs the full count)"
        );
        reduced
    }
}
