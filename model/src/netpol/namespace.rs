//! Namespaces as namespace selectors see them: a name and its labels, always including the
//! control plane's `kubernetes.io/metadata.name=<name>` (the only way to select a namespace by
//! name), which is added when a topology file leaves it out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ObjectMeta;
use super::error::{PolicyError, PolicyProblem};
use crate::names::{Namespace, shorten};

/// The label the control plane sets on every namespace, equal to its name.
pub const METADATA_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A Namespace object as the API returns it (only its metadata is read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// A namespace and its labels. Invariant: `labels[METADATA_NAME_LABEL] == name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceLabels {
    name: Namespace,
    labels: BTreeMap<String, String>,
}

impl NamespaceLabels {
    /// Sets `kubernetes.io/metadata.name` to the name (the API server makes it so and keeps
    /// it immutable, so a different value in a file is overridden).
    pub fn new(name: Namespace, mut labels: BTreeMap<String, String>) -> Self {
        labels.insert(METADATA_NAME_LABEL.to_owned(), name.as_str().to_owned());
        Self { name, labels }
    }

    /// A namespace the caller knows nothing about beyond its name.
    pub fn unlabelled(name: Namespace) -> Self {
        Self::new(name, BTreeMap::new())
    }

    pub fn name(&self) -> &Namespace {
        &self.name
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

impl NamespaceObject {
    pub fn check(&self) -> Result<NamespaceLabels, PolicyError> {
        let err = |problem| PolicyError {
            object: format!("namespace {}", shorten(self.metadata.name.as_deref().unwrap_or("?"))),
            field: "metadata.name".to_owned(),
            problem,
        };
        let name = self.metadata.name.as_deref().ok_or_else(|| err(PolicyProblem::Missing))?;
        let name = Namespace::new(name).map_err(|e| err(e.into()))?;
        Ok(NamespaceLabels::new(name, self.metadata.labels.clone().unwrap_or_default()))
    }
}
