//! Identifiers: [`RunId`] and [`TaskKey`].

use std::fmt;
use std::str::FromStr;

use std::borrow::Borrow;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The identity of one run of a workflow: a UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(Uuid);

impl RunId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({})", self.0)
    }
}

impl FromStr for RunId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// The identity of one engine instance: the owner of the leases it holds on runs in a store
/// shared by several instances. A UUID v7, fresh at every start.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(Uuid);

impl InstanceId {
    /// A fresh id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for InstanceId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({})", self.0)
    }
}

/// Which task of a run an event or a dispatch is about.
///
/// A `step` or `action` node's task key is its node id; the condition of branch `i` of an `if`
/// node `check` is `check#0`, `check#1`, ...; other handlers of a node are tagged the same way
/// (`each#items`, `charge#on_error`, `approve#on_pause`, `child#payload`, `loop#while`,
/// `on_success#hook`). Inside loops the iteration path follows an `@`, outermost first:
/// `charge@3` is step `charge` in iteration 3, `check#0@1.2` a condition two loops deep.
/// Waits (`sleep`, `pause`, ...) are keyed the same way. Node ids cannot contain `#` or `@`,
/// so keys never collide. Together with the run id a key forms the task's idempotency key,
/// which stays the same across retries.
///
/// Cloning is a reference-count bump.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskKey(Arc<str>);

impl TaskKey {
    /// A task key from its text form.
    pub fn new(key: impl AsRef<str>) -> Self {
        Self(Arc::from(key.as_ref()))
    }

    /// The key of the condition task of branch `branch` of the `if` node `node`.
    pub fn condition(node: &str, branch: usize) -> Self {
        Self::new(format!("{node}#{branch}"))
    }

    /// The node id this task belongs to (the text before any `#` or `@`).
    pub fn node_id(&self) -> &str {
        self.0.split(['#', '@']).next().unwrap_or(&self.0)
    }

    /// The loop iterations the task belongs to, outermost first (`charge@2.0` is in
    /// iteration 0 of an inner loop inside iteration 2 of an outer one); empty outside loops.
    pub fn iterations(&self) -> Vec<u32> {
        match self.0.split_once('@') {
            Some((_, path)) => path.split('.').filter_map(|i| i.parse().ok()).collect(),
            None => Vec::new(),
        }
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskKey({})", self.0)
    }
}

impl Borrow<str> for TaskKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for TaskKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TaskKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(Self(Arc::from(s)))
    }
}
