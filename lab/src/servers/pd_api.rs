//! The slice of PD's HTTP API the lab imitates: who the members of a PD set are
//! (`/pd/api/v1/members`) and whether they are healthy (`/pd/api/v1/health`), with JSON shaped
//! like real PD's so tools that read them (pd-ctl, tidb-operator, netdiag's probes) parse it.
//!
//! Ids are not random: member and cluster ids are hashes of the member names, so the same
//! inventory always yields the same JSON.

use serde::{Deserialize, Serialize};

use netdiag_model::{Name, Namespace, Port};

/// One PD member as the caller wires the PD set (all pods of one PD component).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdMember {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl PdMember {
    /// A member of a PD set behind a headless peer service, with URLs as tidb-operator
    /// writes them: `http://<pod>.<peer-service>.<namespace>.svc:<port>`.
    pub fn in_peer_service(
        pod: &Name,
        peer_service: &Name,
        namespace: &Namespace,
        client_port: Port,
        peer_port: Port,
    ) -> Self {
        let host = format!("{pod}.{peer_service}.{namespace}.svc");
        Self {
            name: pod.to_string(),
            peer_urls: vec![format!("http://{host}:{peer_port}")],
            client_urls: vec![format!("http://{host}:{client_port}")],
        }
    }

    /// A stable, non-zero id derived from the member's name.
    pub fn member_id(&self) -> u64 {
        stable_id([self.name.as_str()])
    }
}

/// The PD set a PD client-port listener describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdCluster {
    pub cluster_id: u64,
    /// The first member is the leader (and etcd leader).
    pub members: Vec<PdMember>,
}

impl PdCluster {
    /// A PD set whose cluster id derives from its member names (in any order).
    pub fn new(members: Vec<PdMember>) -> Self {
        let mut names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        let cluster_id = stable_id(names);
        Self { cluster_id, members }
    }

    pub fn leader(&self) -> Option<&PdMember> {
        self.members.first()
    }

    /// The body of `GET /pd/api/v1/members`.
    pub(crate) fn members_response(&self) -> MembersResponse {
        let leader = self.leader().map(MemberJson::from);
        MembersResponse {
            header: ResponseHeader { cluster_id: self.cluster_id },
            members: self.members.iter().map(MemberJson::from).collect(),
            etcd_leader: leader.clone(),
            leader,
        }
    }

    /// The body of `GET /pd/api/v1/health`: every member healthy (lab faults are network
    /// faults, which the probes must find on their own).
    pub(crate) fn health_response(&self) -> Vec<MemberHealth> {
        self.members
            .iter()
            .map(|m| MemberHealth {
                name: m.name.clone(),
                member_id: m.member_id(),
                client_urls: m.client_urls.clone(),
                health: true,
            })
            .collect()
    }
}

/// FNV-1a over the parts (each followed by a 0 byte), never 0.
fn stable_id<'a>(parts: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash.max(1)
}

/// `GET /pd/api/v1/members`, as PD answers it (the fields netdiag and pd-ctl read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MembersResponse {
    pub(crate) header: ResponseHeader,
    pub(crate) members: Vec<MemberJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) leader: Option<MemberJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) etcd_leader: Option<MemberJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResponseHeader {
    pub(crate) cluster_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberJson {
    pub(crate) name: String,
    pub(crate) member_id: u64,
    pub(crate) peer_urls: Vec<String>,
    pub(crate) client_urls: Vec<String>,
}

impl From<&PdMember> for MemberJson {
    fn from(m: &PdMember) -> Self {
        Self {
            name: m.name.clone(),
            member_id: m.member_id(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
        }
    }
}

/// One element of `GET /pd/api/v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberHealth {
    pub(crate) name: String,
    pub(crate) member_id: u64,
    pub(crate) client_urls: Vec<String>,
    pub(crate) health: bool,
}
