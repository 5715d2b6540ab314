//! Workflow definition objects (WDO): the serde model, validation with JSON paths, and the
//! Rust builder.

mod builder;
mod fields;
mod handlers;
mod model;
mod rules;
mod structure;
mod validate;

pub use builder::*;
pub use handlers::HandlerRef;
pub use model::*;
