//! ferry `source-postgres` (work in progress).
