//! Validation of workflow definitions (to be written).

use crate::error::WdoError;
use crate::wdo::WorkflowDef;

impl WorkflowDef {
    /// Reads a WDO from JSON text, reporting every problem with its JSON path.
    pub fn from_json(text: &str) -> Result<WorkflowDef, WdoError> {
        let def: WorkflowDef =
            serde_json::from_str(text).map_err(|e| WdoError::single("$", e.to_string()))?;
        def.validate()?;
        Ok(def)
    }

    /// Checks the semantic rules (unique ids, non-empty branches, ...).
    pub fn validate(&self) -> Result<(), WdoError> {
        Ok(())
    }
}
