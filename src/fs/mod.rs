//! Files written so that a crash never leaves half of one, and secret-bearing files that no
//! other user can read, plant or swap.

pub mod atomic;
