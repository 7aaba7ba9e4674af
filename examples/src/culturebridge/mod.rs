//! The CultureBridge migration from the Bubble Data API (seed 004).
