//! Helpers every example shares.
