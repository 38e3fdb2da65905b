//! What each lab app listener is and how it answers HTTP, pure: [`AppInfo`] describes one
//! listener of one pod, [`route`] turns a parsed request into a response.
//!
//! Every app answers `GET /` and `GET /healthz` with its [`AppIdentity`], so a probe through a
//! service can tell WHICH backend answered. A PD client-port listener (one given a
//! [`PdCluster`]) also serves PD's members and health API. Anything else is 404; methods other
//! than `GET` and `HEAD` are 405.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use netdiag_model::{PodRef, Port};

use super::http::{HttpResponse, RequestHead, Status};
use super::pd_api::PdCluster;

/// What an app listener pretends to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    Pd,
    Tikv,
    Tidb,
    Discovery,
    Generic,
}

/// One listening port of one lab pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    pub pod: PodRef,
    pub ips: Vec<IpAddr>,
    pub port: Port,
    pub kind: AppKind,
    /// `Some` on a PD client-port listener: it then serves `/pd/api/v1/members` and
    /// `/pd/api/v1/health` for this PD set. The caller decides which listener gets it.
    pub pd: Option<PdCluster>,
}

impl AppInfo {
    pub fn new(pod: PodRef, ips: Vec<IpAddr>, port: Port, kind: AppKind) -> Self {
        Self { pod, ips, port, kind, pd: None }
    }

    /// Makes this listener serve PD's API for `cluster`.
    pub fn with_pd_api(mut self, cluster: PdCluster) -> Self {
        self.pd = Some(cluster);
        self
    }

    pub fn identity(&self) -> AppIdentity {
        AppIdentity { pod: self.pod.to_string(), port: self.port.get(), app: self.kind }
    }
}

/// The body of `GET /` and `GET /healthz`: `{"pod":"tidb/demo-pd-0","port":2379,"app":"pd"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppIdentity {
    pub pod: String,
    pub port: u16,
    pub app: AppKind,
}

/// The response of `app` to `request`.
pub(crate) fn route(app: &AppInfo, request: &RequestHead) -> HttpResponse {
    let head_only = match request.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return HttpResponse::error(Status::MethodNotAllowed, "only GET and HEAD"),
    };
    let response = match (request.path.as_str(), &app.pd) {
        ("/" | "/healthz", _) => HttpResponse::json(Status::Ok, &app.identity()),
        ("/pd/api/v1/members", Some(pd)) => HttpResponse::json(Status::Ok, &pd.members_response()),
        ("/pd/api/v1/health", Some(pd)) => HttpResponse::json(Status::Ok, &pd.health_response()),
        _ => HttpResponse::error(Status::NotFound, "not found"),
    };
    HttpResponse { head_only, ..response }
}

#[cfg(test)]
mod tests;
