//! Trigger sources for cronflow: cron schedules, webhooks, polling and events, starting runs
//! through the engine's public [`EngineHandle`](cronflow_core::EngineHandle).
//!
//! Not built yet: this crate holds its place in the workspace so the crate map of
//! `ARCHITECTURE.md` is complete. Workflows can already declare triggers in their definition
//! ([`TriggerDef`](cronflow_core::TriggerDef)); until this crate runs them, start runs with
//! `EngineHandle::trigger`.
