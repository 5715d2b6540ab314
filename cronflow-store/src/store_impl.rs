//! The [`Store`](cronflow_core::Store) impl shared by the backends: each store type holds a
//! sea-orm connection, and every operation is the same function for both, which takes its
//! SQL dialect from the connection.

/// Implements `Store` for `$store`, a type with a `db: DatabaseConnection` field.
macro_rules! delegate_store {
    ($store:ty) => {
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
            ) -> Result<(), cronflow_core::StoreError> {
                crate::commit::commit(&self.db, batch).await
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

            async fn list_runs(
                &self,
                query: &cronflow_core::RunQuery,
            ) -> Result<Vec<cronflow_core::RunRecord>, cronflow_core::StoreError> {
                crate::read::list_runs(&self.db, query).await
            }
        }
    };
}

pub(crate) use delegate_store;
