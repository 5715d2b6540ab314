//! The Rust builder (to be written).
