//! Shared helpers for the ferry examples.
