//! ferry `sink-dynamodb` (work in progress).
