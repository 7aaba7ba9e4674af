//! The observations partitioning migration (seed 002).
