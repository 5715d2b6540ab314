//! Shared fixtures for the cronflow benchmarks.
