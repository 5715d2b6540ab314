//! Mock executor (to be written by the executors helper).

/// Placeholder.
#[derive(Debug, Default)]
pub struct MockExecutor;
/// Placeholder.
#[derive(Debug)]
pub struct MockCall;
