//! The CITES trade migrations (seeds 000 and 001).
