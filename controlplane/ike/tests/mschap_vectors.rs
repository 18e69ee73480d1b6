//! Known answers for the test-only MS-CHAPv2 helper used by the pair tests.
mod common;
