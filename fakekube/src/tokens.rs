//! TokenReview (`POST /apis/authentication.k8s.io/v1/tokenreviews`) for tokens a test issues
//! ([`crate::FakeKube::issue_token`]), answered as the API server answers for a bound,
//! projected ServiceAccount token: the ServiceAccount's username and groups, the pod (and, as
//! Kubernetes 1.30+ does, the node) in `extra`, and the audiences the token and the review
//! share — none shared, or an unknown token, is `authenticated: false` with the error.

use std::collections::HashMap;

use serde_json::{Value, json};

/// What an issued token stands for.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub namespace: String,
    pub service_account: String,
    pub audiences: Vec<String>,
    /// The pod it is bound to: name and uid.
    pub pod: Option<(String, String)>,
    /// The node the pod runs on, when the review is to name it.
    pub node: Option<String>,
}

/// The answer to a TokenReview `body` (a TokenReview object) given the tokens issued.
pub(crate) fn review(issued: &HashMap<String, IssuedToken>, body: &Value) -> Value {
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    let asked: Vec<String> = body["spec"]["audiences"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let status = match issued.get(token) {
        None => json!({ "authenticated": false, "error": "[invalid bearer token, token lookup failed]" }),
        Some(t) => {
            let shared: Vec<&String> = if asked.is_empty() {
                t.audiences.iter().collect()
            } else {
                asked.iter().filter(|a| t.audiences.contains(a)).collect()
            };
            if shared.is_empty() {
                json!({
                    "authenticated": false,
                    "error": format!("[invalid bearer token, token audiences {:?} is invalid for the target audiences {:?}]", t.audiences, asked),
                })
            } else {
                let mut extra = serde_json::Map::new();
                if let Some((name, uid)) = &t.pod {
                    extra.insert("authentication.kubernetes.io/pod-name".into(), json!([name]));
                    extra.insert("authentication.kubernetes.io/pod-uid".into(), json!([uid]));
                }
                if let Some(node) = &t.node {
                    extra.insert("authentication.kubernetes.io/node-name".into(), json!([node]));
                }
                json!({
                    "authenticated": true,
                    "audiences": shared,
                    "user": {
                        "username": format!("system:serviceaccount:{}:{}", t.namespace, t.service_account),
                        "uid": "6f1c0c1e-0000-4000-8000-00000000a9e7",
                        "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", t.namespace), "system:authenticated"],
                        "extra": extra,
                    },
                })
            }
        }
    };
    json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": { "creationTimestamp": null },
        "spec": body["spec"].clone(),
        "status": status,
    })
}
