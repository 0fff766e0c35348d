//! xorshift64*: a small seeded generator without a dependency, so that a failing fuzz
//! case reproduces from its seed. Shared by `tests/fuzz.rs`, `tests/sql.rs` and
//! `checkpoint/tests/fuzz.rs`.

#![allow(dead_code)] // each fuzz test uses a part

/// The generator; its state is the seed (never 0: xorshift stays at 0).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// One of `xs`, which must not be empty.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    /// A byte in `1..=255`.
    pub fn nonzero_byte(&mut self) -> u8 {
        (self.next() % 255) as u8 + 1
    }
}
