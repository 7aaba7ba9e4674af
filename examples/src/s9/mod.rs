//! The S9 sales migration to DynamoDB (seed 003).
