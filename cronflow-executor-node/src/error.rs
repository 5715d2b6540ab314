//! [`NodeExecutorError`]: why the pool could not start.

use std::path::PathBuf;

/// Why [`NodeExecutorBuilder::spawn`](crate::NodeExecutorBuilder::spawn) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeExecutorError {
    /// No module was given to the builder.
    #[error("no JavaScript module given: call NodeExecutorBuilder::module(path)")]
    NoModule,
    /// The module file cannot be found.
    #[error("JavaScript module {}: {source}", module.display())]
    ModuleNotFound {
        /// The module path as given.
        module: PathBuf,
        /// Why it cannot be resolved.
        #[source]
        source: std::io::Error,
    },
    /// The `node` runtime could not be started.
    #[error("cannot start `{}` for module {}: {source}", runtime.display(), module.display())]
    Runtime {
        /// The runtime command.
        runtime: PathBuf,
        /// The module.
        module: PathBuf,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// A local I/O operation of the pool failed (temporary directory, socket).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The module failed to load in the worker (syntax error, throws at import, no workflow).
    #[error("JavaScript module {} failed to load: {name}: {message}", module.display())]
    ModuleLoad {
        /// The module.
        module: PathBuf,
        /// The JavaScript error's name, e.g. `SyntaxError`.
        name: String,
        /// The JavaScript error's message.
        message: String,
        /// The JavaScript stack, if any.
        stack: Option<String>,
    },
    /// The worker did not connect and report `ready` in time.
    #[error("the worker for module {} did not become ready within {timeout:?}", module.display())]
    StartTimeout {
        /// The module.
        module: PathBuf,
        /// The start-up timeout.
        timeout: std::time::Duration,
    },
    /// The worker exited or closed its connection before it was ready.
    #[error("the worker for module {} exited before it was ready: {detail}", module.display())]
    WorkerExited {
        /// The module.
        module: PathBuf,
        /// Exit status or socket state.
        detail: String,
    },
    /// The worker broke the protocol during start-up.
    #[error("protocol error from the worker for module {}: {message}", module.display())]
    Protocol {
        /// The module.
        module: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A workflow definition the module sent is rejected by the Rust model.
    #[error("module {} defines an invalid workflow (#{index}): {error}", module.display())]
    InvalidWorkflow {
        /// The module.
        module: PathBuf,
        /// Position of the workflow in the `ready` message.
        index: usize,
        /// The validation problems.
        error: cronflow_core::WdoError,
    },
}
