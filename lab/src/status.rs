//! `netdiag lab status`: every namespace of the lab with its interfaces and addresses (read
//! live with `ip -j`), the active faults, and where the inventory is.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::faults::ActiveFault;
use crate::netcmd;
use crate::plan::LabPlan;
use crate::state::{LabState, StateError};

#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    pub name: String,
    pub up: bool,
    /// The server process (cluster DNS, app listeners); `None` when it is not running.
    pub server_pid: Option<i32>,
    pub proxy_mode: String,
    pub overlay: String,
    pub ipv6: bool,
    pub control_ip: String,
    pub dns_ip: String,
    pub inventory: PathBuf,
    pub namespaces: Vec<NamespaceStatus>,
    pub faults: Vec<ActiveFault>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamespaceStatus {
    pub name: String,
    /// `underlay`, `node` or `pod`.
    pub role: &'static str,
    /// The node name or `<ns>/<pod>` this namespace stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    pub path: PathBuf,
    pub exists: bool,
    pub interfaces: Vec<InterfaceStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub state: String,
    pub mtu: u32,
    pub addresses: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    operstate: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Debug, Deserialize)]
struct IpAddrInfo {
    local: String,
    prefixlen: u8,
}

/// Parses `ip -j addr show` output (pure, so it is tested without namespaces).
pub fn parse_ip_addr_json(text: &str) -> Result<Vec<InterfaceStatus>, serde_json::Error> {
    let links: Vec<IpLink> = serde_json::from_str(text)?;
    Ok(links
        .into_iter()
        .map(|l| InterfaceStatus {
            state: if l.operstate == "UNKNOWN" && l.flags.iter().any(|f| f == "UP") {
                "UP".into()
            } else if l.operstate.is_empty() {
                "UNKNOWN".into()
            } else {
                l.operstate
            },
            name: l.ifname,
            mtu: l.mtu,
            addresses: l.addr_info.iter().map(|a| format!("{}/{}", a.local, a.prefixlen)).collect(),
        })
        .collect())
}

fn interfaces(netns: &str) -> Vec<InterfaceStatus> {
    netcmd::run(None, "ip", &["-n", netns, "-j", "addr", "show"], None)
        .ok()
        .and_then(|t| parse_ip_addr_json(&t).ok())
        .unwrap_or_default()
}

pub fn status(state: &LabState) -> Result<LabStatus, StateError> {
    let plan = state.read_plan()?;
    let faults = state.read_faults()?;
    let mut namespaces = Vec::new();
    let mut push = |name: &str, role: &'static str, of: Option<String>| {
        let path = LabPlan::netns_path(name);
        let exists = path.exists();
        namespaces.push(NamespaceStatus {
            name: name.to_owned(),
            role,
            of,
            interfaces: if exists { interfaces(name) } else { Vec::new() },
            exists,
            path,
        });
    };
    push(&plan.underlay_netns, "underlay", None);
    for n in &plan.nodes {
        push(&n.netns, "node", Some(n.name.to_string()));
    }
    for p in &plan.pods {
        push(&p.netns, "pod", Some(p.pod.to_string()));
    }
    Ok(LabStatus {
        name: plan.name.clone(),
        up: namespaces.iter().all(|n| n.exists),
        server_pid: state.server_pid(),
        proxy_mode: plan.proxy_mode.to_string(),
        overlay: format!("{:?}", plan.overlay).to_lowercase(),
        ipv6: plan.ipv6,
        control_ip: plan.control_ip.to_string(),
        dns_ip: plan.dns_ip.to_string(),
        inventory: state.inventory_path(),
        namespaces,
        faults,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_json() {
        let text = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"operstate":"UNKNOWN","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
        {"ifindex":2,"ifname":"eth0","flags":["BROADCAST","UP"],"mtu":1500,"operstate":"UP","addr_info":[{"family":"inet","local":"10.244.1.2","prefixlen":32}]},
        {"ifindex":3,"ifname":"x","flags":[],"mtu":1500,"operstate":"DOWN","addr_info":[]}]"#;
        let ifs = parse_ip_addr_json(text).unwrap();
        assert_eq!(ifs.len(), 3);
        assert_eq!(ifs[0].state, "UP");
        assert_eq!(ifs[1].addresses, ["10.244.1.2/32"]);
        assert_eq!(ifs[2].state, "DOWN");
        assert!(parse_ip_addr_json("not json").is_err());
    }
}
