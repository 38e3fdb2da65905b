//! The two PATCH flavours the fake accepts, pure: JSON merge patch (RFC 7386) and the
//! strategic merge patch as far as the served objects need it — maps merge, `null` deletes a
//! key, and a list with a merge key (`status.conditions` by `type`) merges element by element
//! (`$patch: delete` on an element removes it); every other list is replaced. Directives the
//! fake does not implement are refused, never ignored, except `$setElementOrder/…`, which only
//! orders a merged list (the fake keeps the existing order and appends new elements).

use serde_json::{Map, Value};

/// How the body of a PATCH is read, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
}

impl PatchType {
    /// The patch type a `Content-Type` names; `Err` names what is not supported.
    pub(crate) fn from_content_type(ct: &str) -> Result<PatchType, String> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            other => Err(format!(
                "the fake API server takes merge or strategic merge patches, not {other:?} (JSON patch and server-side apply are not implemented)"
            )),
        }
    }
}

/// The merge key of the list at `path` (dot-separated field names from the object's root), for
/// the lists the served kinds declare with `patchStrategy: merge`.
fn merge_key(path: &str) -> Option<&'static str> {
    match path {
        "status.conditions" | "status.addresses" => Some("type"),
        _ => None,
    }
}

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// A strategic merge patch applied to `target` (an object of a served kind); `Err` names a
/// directive or shape the fake refuses.
pub(crate) fn strategic(target: &mut Value, patch: &Value) -> Result<(), String> {
    strategic_at(target, patch, "")
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn strategic_at(target: &mut Value, patch: &Value, path: &str) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return Ok(()) };
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") {
            continue;
        }
        if k.starts_with('$') {
            return Err(format!("the fake API server does not implement the directive {k:?} (at {path:?})"));
        }
        let here = join(path, k);
        match (v, merge_key(&here)) {
            (Value::Null, _) => {
                t.remove(k);
            }
            (Value::Array(items), Some(key)) => {
                let slot = t.entry(k.clone()).or_insert_with(|| Value::Array(Vec::new()));
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                if let Value::Array(existing) = slot {
                    merge_list(existing, items, key, &here)?;
                }
            }
            _ => strategic_at(t.entry(k.clone()).or_insert(Value::Null), v, &here)?,
        }
    }
    Ok(())
}

/// Merges `patch`'s elements into `list` by `key`: a matching element is patched (or removed by
/// `$patch: delete`), a new one appended.
fn merge_list(list: &mut Vec<Value>, patch: &[Value], key: &str, path: &str) -> Result<(), String> {
    for item in patch {
        let id = item
            .get(key)
            .filter(|v| !v.is_null())
            .ok_or_else(|| format!("an element of {path} has no merge key {key:?}"))?;
        let position = list.iter().position(|e| e.get(key) == Some(id));
        let directive = item.get("$patch").map(|d| d.as_str().unwrap_or_default());
        match directive {
            Some("delete") => {
                if let Some(i) = position {
                    list.remove(i);
                }
            }
            Some(other) => {
                return Err(format!(
                    "the fake API server does not implement \"$patch: {other}\" (at {path})"
                ));
            }
            None => match position {
                Some(i) => strategic_at(&mut list[i], item, path)?,
                None => {
                    let mut fresh = Value::Object(Map::new());
                    strategic_at(&mut fresh, item, path)?;
                    list.push(fresh);
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node() -> Value {
        json!({
            "metadata": {"name": "node-3", "labels": {"a": "1"}},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                ],
                "addresses": [{"type": "InternalIP", "address": "172.29.0.13"}],
            },
        })
    }

    #[test]
    fn strategic_merges_conditions_by_type() {
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "a new condition is appended, the others survive",
                json!({"status": {"conditions": [{"type": "NetdiagNetwork", "status": "True", "reason": "node-isolated"}]}}),
                json!([
                    {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                    {"type": "NetdiagNetwork", "status": "True", "reason": "node-isolated"},
                ]),
            ),
            (
                "an existing condition is patched field by field; null removes a field",
                json!({"$setElementOrder/conditions": [{"type": "Ready"}], "status": {"conditions": [{"type": "Ready", "status": "False", "reason": null, "message": "down"}]}}),
                json!([
                    {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                    {"type": "Ready", "status": "False", "message": "down"},
                ]),
            ),
            (
                "$patch: delete removes the element",
                json!({"status": {"conditions": [{"type": "MemoryPressure", "$patch": "delete"}]}}),
                json!([{"type": "Ready", "status": "True", "reason": "KubeletReady"}]),
            ),
        ];
        for (what, patch, want) in cases {
            let mut n = node();
            strategic(&mut n, &patch).unwrap();
            assert_eq!(n["status"]["conditions"], want, "{what}");
            assert_eq!(
                n["status"]["addresses"],
                node()["status"]["addresses"],
                "{what}: addresses untouched"
            );
            assert_eq!(n["metadata"], node()["metadata"], "{what}");
        }
    }

    #[test]
    fn merge_patch_replaces_lists_and_strategic_refuses_what_it_lacks() {
        let mut n = node();
        merge(
            &mut n,
            &json!({"status": {"conditions": [{"type": "X"}]}, "metadata": {"labels": {"a": null, "b": "2"}}}),
        );
        assert_eq!(n["status"]["conditions"], json!([{"type": "X"}]), "merge patch replaces a list");
        assert_eq!(n["metadata"]["labels"], json!({"b": "2"}));
        let mut n = node();
        assert!(strategic(&mut n, &json!({"$retainKeys": ["status"]})).is_err());
        assert!(
            strategic(&mut n, &json!({"status": {"conditions": [{"status": "True"}]}})).is_err(),
            "no type"
        );
        assert!(
            strategic(&mut n, &json!({"status": {"conditions": [{"type": "Ready", "$patch": "replace"}]}}))
                .is_err()
        );
        // A list without a merge key is replaced, as in a merge patch.
        strategic(&mut n, &json!({"spec": {"podCIDRs": ["10.244.3.0/24"]}})).unwrap();
        assert_eq!(n["spec"]["podCIDRs"], json!(["10.244.3.0/24"]));
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json; charset=utf-8"),
            Ok(PatchType::Strategic)
        );
        assert!(PatchType::from_content_type("application/json-patch+json").is_err());
    }
}
