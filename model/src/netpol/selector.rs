//! Label selectors: the API's `LabelSelector` (`matchLabels` and `matchExpressions`) and its
//! checked form [`Selector`], which matches a label set. All requirements are ANDed; `{}`
//! matches everything; `NotIn` and `DoesNotExist` match objects that lack the key [LBL].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::error::PolicyProblem;
use crate::names::shorten;

/// The wire form. Omitted fields mean no requirement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    #[serde(default)]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist` (checked by [`LabelSelector::check`]).
    #[serde(default)]
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// A checked selector: requirements, all of which must hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// One requirement on one label key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub op: SelectorOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SelectorOp {
    /// The key is present with one of these values (`matchLabels` entries become `In [v]`).
    In(BTreeSet<String>),
    /// The key is absent, or present with none of these values.
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

impl Selector {
    /// The selector `{}`.
    pub fn everything() -> Self {
        Self::default()
    }

    /// True for `{}`, which matches every object.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.op {
            SelectorOp::In(values) => value.is_some_and(|v| values.contains(v)),
            SelectorOp::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            SelectorOp::Exists => value.is_some(),
            SelectorOp::DoesNotExist => value.is_none(),
        }
    }
}

impl LabelSelector {
    /// Checks the operators and their values. On failure, the field path is relative to the
    /// selector (`matchExpressions[1].values`).
    pub fn check(&self) -> Result<Selector, (String, PolicyProblem)> {
        let mut requirements = Vec::new();
        for (key, value) in self.match_labels.iter().flatten() {
            if key.is_empty() {
                return Err(("matchLabels".to_owned(), PolicyProblem::EmptyLabelKey));
            }
            requirements
                .push(Requirement { key: key.clone(), op: SelectorOp::In(BTreeSet::from([value.clone()])) });
        }
        for (i, expr) in self.match_expressions.iter().flatten().enumerate() {
            let at = |field: &str| format!("matchExpressions[{i}].{field}");
            if expr.key.is_empty() {
                return Err((at("key"), PolicyProblem::EmptyLabelKey));
            }
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            let op = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    let name = if expr.operator == "In" { "In" } else { "NotIn" };
                    return Err((at("values"), PolicyProblem::ValuesRequired(name)));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    let name = if expr.operator == "Exists" { "Exists" } else { "DoesNotExist" };
                    return Err((at("values"), PolicyProblem::ValuesForbidden(name)));
                }
                "In" => SelectorOp::In(values),
                "NotIn" => SelectorOp::NotIn(values),
                "Exists" => SelectorOp::Exists,
                "DoesNotExist" => SelectorOp::DoesNotExist,
                other => return Err((at("operator"), PolicyProblem::UnknownOperator(shorten(other)))),
            };
            requirements.push(Requirement { key: expr.key.clone(), op });
        }
        Ok(Selector { requirements })
    }
}
