//! [`StateHandle`]: durable key-value state for workflows, in a namespace per workflow and one
//! global namespace, kept by the engine's [`Store`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::Clock;
use crate::error::StateError;
use crate::json::Json;
use crate::store::Store;

/// The namespace of the state every workflow shares.
pub const GLOBAL_STATE_NAMESPACE: &str = "global";

/// The prefix of a workflow's own namespace: workflow `orders` keeps its state in
/// `workflow:orders`.
pub const WORKFLOW_STATE_PREFIX: &str = "workflow:";

/// The longest state key accepted, in bytes.
pub const MAX_STATE_KEY_BYTES: usize = 512;

/// The default limit on a value's JSON text (1 MiB, the engine's default
/// [`max_payload_bytes`](crate::EngineBuilder::max_payload_bytes)).
pub const DEFAULT_MAX_STATE_VALUE_BYTES: usize = 1 << 20;

/// Durable key-value state of one namespace: a workflow's own (`workflow:<id>`) or the
/// global one (`global`), shared by every workflow.
///
/// Values are JSON and survive restarts (on a durable store); they are not part of any run's
/// history, so a retried or replayed task sees what is stored *now*. Writes are immediate,
/// not transactional with the run: a handler that fails after `set` leaves the value set.
/// [`incr`](StateHandle::incr) is atomic, also across engine instances sharing a store.
/// A value may expire: with a TTL it reads as absent once the engine's [`Clock`] passes its
/// expiry.
///
/// A handler gets its workflow's handle from [`TaskContext::state`](crate::TaskContext::state);
/// a host from [`EngineHandle::state`](crate::EngineHandle::state) and
/// [`EngineHandle::global_state`](crate::EngineHandle::global_state). Cloning is one
/// reference-count bump.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cronflow_core::{MemoryStore, StateHandle, SystemClock};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cronflow_core::StateError> {
/// let store = Arc::new(MemoryStore::new()); // an engine passes its own store and clock
/// let state = StateHandle::new_workflow(store, Arc::new(SystemClock), "orders");
/// assert_eq!(state.namespace(), "workflow:orders");
///
/// state.set("last-order", &42, None).await?;
/// assert_eq!(state.get_as::<u32>("last-order").await?, Some(42));
///
/// assert_eq!(state.incr("seen", 1).await?, 1);
/// assert_eq!(state.incr("seen", 5).await?, 6);
///
/// state.set("session", &"abc", Some(Duration::from_secs(3600))).await?; // gone in an hour
/// assert!(state.delete("session").await?);
///
/// // The global namespace is shared by every workflow.
/// state.global().set("maintenance", &false, None).await?;
/// assert_eq!(state.get("maintenance").await?, None);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StateHandle {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    namespace: Box<str>,
    max_value_bytes: usize,
    /// The global namespace's handle, for a workflow's handle (`None` in the global one).
    global: Option<StateHandle>,
}

impl fmt::Debug for StateHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateHandle").field("namespace", &self.namespace()).finish_non_exhaustive()
    }
}

impl StateHandle {
    /// The state of workflow `workflow_id` (namespace `workflow:<workflow_id>`) in `store`,
    /// with time read from `clock`.
    pub fn new_workflow(store: Arc<dyn Store>, clock: Arc<dyn Clock>, workflow_id: &str) -> Self {
        Self::workflow_with_limit(store, clock, workflow_id, DEFAULT_MAX_STATE_VALUE_BYTES)
    }

    /// The global state (namespace `global`) in `store`, with time read from `clock`.
    pub fn new_global(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self::global_with_limit(store, clock, DEFAULT_MAX_STATE_VALUE_BYTES)
    }

    pub(crate) fn workflow_with_limit(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        workflow_id: &str,
        max_value_bytes: usize,
    ) -> Self {
        Self::global_with_limit(store, clock, max_value_bytes).workflow_beside(workflow_id)
    }

    /// The handle of workflow `workflow_id` in the store of this global handle, sharing it.
    pub(crate) fn workflow_beside(&self, workflow_id: &str) -> Self {
        let global = self.global();
        let namespace = format!("{WORKFLOW_STATE_PREFIX}{workflow_id}").into_boxed_str();
        let inner = Inner {
            store: Arc::clone(&global.inner.store),
            clock: Arc::clone(&global.inner.clock),
            namespace,
            max_value_bytes: global.inner.max_value_bytes,
            global: Some(global),
        };
        Self { inner: Arc::new(inner) }
    }

    pub(crate) fn global_with_limit(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        max_value_bytes: usize,
    ) -> Self {
        let namespace = GLOBAL_STATE_NAMESPACE.into();
        Self { inner: Arc::new(Inner { store, clock, namespace, max_value_bytes, global: None }) }
    }

    /// The namespace: `workflow:<id>` or `global`.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The global state, shared by every workflow (this handle itself if it is global).
    pub fn global(&self) -> StateHandle {
        self.inner.global.clone().unwrap_or_else(|| self.clone())
    }

    /// The value of `key`, or `None` if it is not set or has expired.
    pub async fn get(&self, key: &str) -> Result<Option<Json>, StateError> {
        check_key(key)?;
        let now = self.inner.clock.now();
        Ok(self.inner.store.state_get(self.namespace(), key, now).await?)
    }

    /// The value of `key` deserialised into `T`, or `None` if it is not set or has expired.
    pub async fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StateError> {
        let Some(value) = self.get(key).await? else { return Ok(None) };
        value.parse().map(Some).map_err(|source| StateError::Value { key: key.to_owned(), source })
    }

    /// Sets `key` to `value` (serialised to JSON), replacing any value. With a `ttl`, the
    /// value reads as absent once it has passed (by the engine's clock, to the microsecond);
    /// without one, it stays until replaced or deleted.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), StateError> {
        let json = Json::from_value(value)
            .map_err(|source| StateError::Value { key: key.to_owned(), source })?;
        self.set_json(key, json, ttl).await
    }

    /// Like [`StateHandle::set`], with a value that is already JSON (stored byte for byte).
    pub async fn set_json(
        &self,
        key: &str,
        value: Json,
        ttl: Option<Duration>,
    ) -> Result<(), StateError> {
        check_key(key)?;
        let limit = self.inner.max_value_bytes;
        if value.len() > limit {
            return Err(StateError::ValueTooLarge {
                key: key.to_owned(),
                size: value.len(),
                limit,
            });
        }
        let expires_at = match ttl {
            Some(ttl) => Some(expiry(self.inner.clock.now(), ttl)?),
            None => None,
        };
        Ok(self.inner.store.state_set(self.namespace(), key, value, expires_at).await?)
    }

    /// Atomically adds `by` (which may be negative) to the integer under `key` and returns
    /// the new value. A missing or expired key counts from 0 and gets no expiry; a live key
    /// keeps its expiry. Fails with [`StateError::NotAnInteger`] on a value that is not an
    /// integer and [`StateError::Overflow`] past `i64`, changing nothing.
    pub async fn incr(&self, key: &str, by: i64) -> Result<i64, StateError> {
        check_key(key)?;
        let now = self.inner.clock.now();
        Ok(self.inner.store.state_incr(self.namespace(), key, by, now).await?)
    }

    /// Deletes `key`; returns whether it had a live value.
    pub async fn delete(&self, key: &str) -> Result<bool, StateError> {
        check_key(key)?;
        let now = self.inner.clock.now();
        Ok(self.inner.store.state_delete(self.namespace(), key, now).await?)
    }
}

/// The handles the engine gives its tasks: one per workflow, built on first use and then
/// cloned (one reference-count bump per task, no allocation).
pub(crate) struct StateHandles {
    global: StateHandle,
    by_workflow: HashMap<Arc<str>, StateHandle>,
}

impl StateHandles {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        max_value_bytes: usize,
    ) -> Self {
        let global = StateHandle::global_with_limit(store, clock, max_value_bytes);
        Self { global, by_workflow: HashMap::new() }
    }

    /// The handle of workflow `workflow_id`.
    pub(crate) fn workflow(&mut self, workflow_id: &Arc<str>) -> StateHandle {
        if let Some(handle) = self.by_workflow.get(&**workflow_id) {
            return handle.clone();
        }
        let handle = self.global.workflow_beside(workflow_id);
        self.by_workflow.insert(Arc::clone(workflow_id), handle.clone());
        handle
    }
}

/// Checks a key: 1 to [`MAX_STATE_KEY_BYTES`] bytes, no NUL (PostgreSQL text cannot hold it).
fn check_key(key: &str) -> Result<(), StateError> {
    let reason = if key.is_empty() {
        "a state key must not be empty".to_owned()
    } else if key.len() > MAX_STATE_KEY_BYTES {
        format!("a state key must be at most {MAX_STATE_KEY_BYTES} bytes, found {}", key.len())
    } else if key.contains('\0') {
        "a state key must not contain a NUL character".to_owned()
    } else {
        return Ok(());
    };
    Err(StateError::InvalidKey { reason })
}

/// `now + ttl`, to the microsecond; a zero or unrepresentable TTL is an error.
fn expiry(now: DateTime<Utc>, ttl: Duration) -> Result<DateTime<Utc>, StateError> {
    if ttl.is_zero() {
        return Err(StateError::InvalidTtl { reason: "a TTL must be longer than zero".into() });
    }
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .map(|at| at.trunc_subsecs(6))
        .ok_or_else(|| StateError::InvalidTtl { reason: format!("a TTL of {ttl:?} is too long") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SystemClock;
    use crate::store::MemoryStore;

    fn handle(store: &Arc<dyn Store>, workflow: &str) -> StateHandle {
        StateHandle::new_workflow(Arc::clone(store), Arc::new(SystemClock), workflow)
    }

    fn state() -> StateHandle {
        handle(&(Arc::new(MemoryStore::new()) as Arc<dyn Store>), "w")
    }

    #[tokio::test]
    async fn bad_keys_ttls_and_values_are_typed_errors() {
        let state = state();
        for key in ["", "a\0b", &"k".repeat(MAX_STATE_KEY_BYTES + 1)] {
            let err = state.get(key).await.unwrap_err();
            assert!(matches!(err, StateError::InvalidKey { .. }), "{err}");
            assert_eq!(err.name(), "InvalidStateKey");
            assert!(!err.is_retryable());
        }
        assert!(state.get(&"k".repeat(MAX_STATE_KEY_BYTES)).await.unwrap().is_none());
        let zero = state.set("k", &1, Some(Duration::ZERO)).await.unwrap_err();
        assert!(matches!(zero, StateError::InvalidTtl { .. }), "{zero}");
        let huge = state.set("k", &1, Some(Duration::MAX)).await.unwrap_err();
        assert!(matches!(huge, StateError::InvalidTtl { .. }), "{huge}");
        let big = "x".repeat(DEFAULT_MAX_STATE_VALUE_BYTES);
        let err = state.set("k", &big, None).await.unwrap_err();
        assert!(
            matches!(err, StateError::ValueTooLarge { limit, .. } if limit == DEFAULT_MAX_STATE_VALUE_BYTES)
        );
        state.set("k", &"text", None).await.unwrap();
        let err = state.get_as::<u32>("k").await.unwrap_err();
        assert_eq!(err.name(), "InvalidStateValue");
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), 3);
        let err = state.set("k", &map, None).await.unwrap_err();
        assert!(matches!(err, StateError::Value { .. }), "{err}");
    }

    #[tokio::test]
    async fn incr_refuses_non_integers_and_overflow() {
        let state = state();
        for text in ["1.5", "1e3", "\"7\"", "null", "[1]", "99999999999999999999"] {
            state.set_json("k", Json::from_raw_str(text).unwrap(), None).await.unwrap();
            let err = state.incr("k", 1).await.unwrap_err();
            assert!(
                matches!(&err, StateError::NotAnInteger { key, namespace } if key == "k" && namespace == "workflow:w"),
                "{text}: {err}"
            );
            let task = err.into_task_error();
            assert_eq!((task.name.as_str(), task.retryable), ("NotAnInteger", false));
        }
        state.set("k", &(i64::MAX - 1), None).await.unwrap();
        assert_eq!(state.incr("k", 1).await.unwrap(), i64::MAX);
        let err = state.incr("k", 1).await.unwrap_err();
        assert!(matches!(err, StateError::Overflow { by: 1, .. }), "{err}");
        assert_eq!(state.get_as::<i64>("k").await.unwrap(), Some(i64::MAX), "unchanged");
        state.set("k", &i64::MIN, None).await.unwrap();
        assert!(matches!(state.incr("k", -1).await, Err(StateError::Overflow { by: -1, .. })));
        assert_eq!(state.incr("k", i64::MAX).await.unwrap(), -1);
    }

    #[tokio::test]
    async fn namespaces_are_apart() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (a, b) = (handle(&store, "a"), handle(&store, "b"));
        a.set("k", &"a", None).await.unwrap();
        b.set("k", &"b", None).await.unwrap();
        a.global().set("k", &"g", None).await.unwrap();
        assert_eq!(a.get_as::<String>("k").await.unwrap().as_deref(), Some("a"));
        assert_eq!(b.get_as::<String>("k").await.unwrap().as_deref(), Some("b"));
        assert_eq!(b.global().get_as::<String>("k").await.unwrap().as_deref(), Some("g"));
        assert_eq!(a.global().global().namespace(), "global");
        assert_eq!(format!("{a:?}"), r#"StateHandle { namespace: "workflow:a", .. }"#);
    }

    #[test]
    fn the_engine_builds_one_handle_per_workflow() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut handles = StateHandles::new(store, Arc::new(SystemClock), 10);
        let id: Arc<str> = Arc::from("orders");
        let first = handles.workflow(&id);
        let again = handles.workflow(&Arc::from("orders"));
        assert!(Arc::ptr_eq(&first.inner, &again.inner));
        assert!(Arc::ptr_eq(
            &first.global().inner,
            &handles.workflow(&Arc::from("x")).global().inner
        ));
        assert_eq!((first.namespace(), first.inner.max_value_bytes), ("workflow:orders", 10));
    }
}
