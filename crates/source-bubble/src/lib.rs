//! ferry `source-bubble` (work in progress).
