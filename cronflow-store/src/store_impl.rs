//! The [`Store`](cronflow_core::Store) impl shared by the backends: each store type holds a
//! sea-orm connection, and every operation is the same function for both, which takes its
//! SQL dialect from the connection.

/// Implements `Store` for `$store`, a type with a `db: DatabaseConnection` field.
///
/// `delegate_store!(Type)` makes a store that is not shared: it keeps the trait's lease
/// defaults (its one engine owns every run) and ignores the claim and fences of a batch.
/// `delegate_store!(Type, shared)` makes a shared store, with leases and fencing
/// ([`crate::lease`], PostgreSQL only).
macro_rules! delegate_store {
    ($store:ty) => {
        crate::store_impl::delegate_store!(@impl $store, claim = |_batch| None, leases = {});
    };
    ($store:ty, shared) => {
        crate::store_impl::delegate_store!(@impl $store, claim = |batch| batch.claim, leases = {
            fn shared(&self) -> bool {
                true
            }

            async fn claim_runs(
                &self,
                owner: cronflow_core::InstanceId,
                lease: std::time::Duration,
                limit: usize,
            ) -> Result<Vec<cronflow_core::ClaimedRun>, cronflow_core::StoreError> {
                crate::lease::claim_runs(&self.db, owner, lease, limit).await
            }

            async fn renew_leases(
                &self,
                owner: cronflow_core::InstanceId,
                lease: std::time::Duration,
            ) -> Result<Vec<(cronflow_core::RunId, u64)>, cronflow_core::StoreError> {
                crate::lease::renew_leases(&self.db, owner, lease).await
            }

            async fn release_runs(
                &self,
                owner: cronflow_core::InstanceId,
                runs: &[cronflow_core::RunId],
            ) -> Result<(), cronflow_core::StoreError> {
                crate::lease::release_runs(&self.db, owner, runs).await
            }

            async fn work_available(&self) {
                self.notifications.next().await
            }
        });
    };
    (@impl $store:ty, claim = |$batch:ident| $claim:expr, leases = { $($leases:tt)* }) => {
        #[async_trait::async_trait]
        impl cronflow_core::Store for $store {
            async fn save_workflow(
                &self,
                def: &cronflow_core::WorkflowDef,
            ) -> Result<u32, cronflow_core::StoreError> {
                crate::workflows::save(&self.db, def).await
            }

            async fn load_workflow(
                &self,
                id: &str,
                revision: u32,
            ) -> Result<Option<cronflow_core::WorkflowDef>, cronflow_core::StoreError> {
                crate::workflows::load(&self.db, id, revision).await
            }

            async fn commit(
                &self,
                batch: &cronflow_core::CommitBatch,
            ) -> Result<cronflow_core::CommitOutcome, cronflow_core::StoreError> {
                let $batch = batch;
                crate::commit::commit(&self.db, $batch, $claim).await
            }

            async fn schedule_cursor(
                &self,
                id: &str,
            ) -> Result<Option<chrono::DateTime<chrono::Utc>>, cronflow_core::StoreError> {
                crate::schedules::cursor(&self.db, id).await
            }

            async fn advance_schedule(
                &self,
                id: &str,
                from: Option<chrono::DateTime<chrono::Utc>>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, cronflow_core::StoreError> {
                crate::schedules::advance(&self.db, id, from, to).await
            }

            async fn prune_trigger_keys(
                &self,
                prefix: &str,
                created_before: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, cronflow_core::StoreError> {
                crate::schedules::prune_keys(&self.db, prefix, created_before).await
            }

            async fn state_get(
                &self,
                namespace: &str,
                key: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<cronflow_core::Json>, cronflow_core::StoreError> {
                crate::state::get_value(&self.db, namespace, key, now).await
            }

            async fn state_set(
                &self,
                namespace: &str,
                key: &str,
                value: cronflow_core::Json,
                expires_at: Option<chrono::DateTime<chrono::Utc>>,
            ) -> Result<(), cronflow_core::StoreError> {
                crate::state::set(&self.db, namespace, key, &value, expires_at).await
            }

            async fn state_incr(
                &self,
                namespace: &str,
                key: &str,
                by: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<i64, cronflow_core::StoreError> {
                crate::state::incr(&self.db, namespace, key, by, now).await
            }

            async fn state_delete(
                &self,
                namespace: &str,
                key: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, cronflow_core::StoreError> {
                crate::state::delete(&self.db, namespace, key, now).await
            }

            async fn state_purge_expired(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, cronflow_core::StoreError> {
                crate::state::purge_expired(&self.db, now).await
            }

            async fn active_runs(
                &self,
            ) -> Result<Vec<cronflow_core::StoredRun>, cronflow_core::StoreError> {
                crate::read::active_runs(&self.db).await
            }

            async fn run(
                &self,
                id: cronflow_core::RunId,
            ) -> Result<Option<cronflow_core::RunRecord>, cronflow_core::StoreError> {
                crate::read::run(&self.db, id).await
            }

            async fn run_events(
                &self,
                id: cronflow_core::RunId,
            ) -> Result<Vec<cronflow_core::RecordedEvent>, cronflow_core::StoreError> {
                Ok(crate::read::run_report(&self.db, id)
                    .await?
                    .map(|r| r.history)
                    .unwrap_or_default())
            }

            async fn run_report(
                &self,
                id: cronflow_core::RunId,
            ) -> Result<Option<cronflow_core::RunReport>, cronflow_core::StoreError> {
                crate::read::run_report(&self.db, id).await
            }

            async fn load_runs(
                &self,
                ids: &[cronflow_core::RunId],
            ) -> Result<Vec<cronflow_core::StoredRun>, cronflow_core::StoreError> {
                crate::read::load_runs(&self.db, ids).await
            }

            async fn list_runs(
                &self,
                query: &cronflow_core::RunQuery,
            ) -> Result<Vec<cronflow_core::RunRecord>, cronflow_core::StoreError> {
                crate::read::list_runs(&self.db, query).await
            }

            $($leases)*
        }
    };
}

pub(crate) use delegate_store;
