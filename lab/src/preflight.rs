//! Checks before a lab is built: root, the tools it needs, and that none of its prefixes is
//! already in use on the host (a lab prefix that the host routes would make results lie).

use ipnet::IpNet;
use netdiag_model::inventory::ProxyMode;
use serde::Deserialize;

use crate::netcmd::{self, CommandError};
use crate::plan::LabPlan;
use crate::topology::Overlay;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("the lab needs root (it creates network namespaces); run it with sudo or as root")]
    NotRoot,
    #[error(transparent)]
    Missing(#[from] CommandError),
    #[error(
        "address overlap: the host has {what} {host}, inside the lab's {prefix}; pick other ranges in a topology file (node_cidr, pod_cidr, service_cidr)"
    )]
    Overlap { what: &'static str, host: String, prefix: IpNet },
    #[error("cannot read the host's addresses and routes: {0}")]
    HostState(String),
}

/// The programs a lab of this plan needs.
pub fn required_programs(plan: &LabPlan) -> Vec<&'static str> {
    let mut p = vec!["ip", "iptables-restore", "iptables-save"];
    if plan.ipv6 {
        p.extend(["ip6tables-restore", "ip6tables-save"]);
    }
    if plan.proxy_mode == ProxyMode::Nftables {
        p.push("nft");
    }
    if plan.overlay == Overlay::Vxlan {
        p.push("bridge");
    }
    p
}

pub fn check_root_and_tools(plan: &LabPlan) -> Result<(), PreflightError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(PreflightError::NotRoot);
    }
    for program in required_programs(plan) {
        netcmd::require(program)?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct IpAddrJson {
    #[serde(default)]
    ifname: String,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Deserialize)]
struct AddrInfo {
    local: Option<std::net::IpAddr>,
    prefixlen: Option<u8>,
}

#[derive(Debug, Deserialize)]
struct RouteJson {
    dst: String,
    #[serde(default)]
    dev: Option<String>,
}

/// Host addresses inside a lab prefix, and host routes overlapping one, are refused. A default
/// route is fine: the lab never connects to the host, so the host's routes never see its traffic.
pub fn check_host_overlap(plan: &LabPlan) -> Result<(), PreflightError> {
    let prefixes = plan.prefixes();
    let addrs_text = netcmd::run(None, "ip", &["-j", "addr", "show"], None)
        .map_err(|e| PreflightError::HostState(netcmd::error_chain(&e)))?;
    let links: Vec<IpAddrJson> =
        serde_json::from_str(&addrs_text).map_err(|e| PreflightError::HostState(netcmd::error_chain(&e)))?;
    for link in &links {
        for a in &link.addr_info {
            let Some(ip) = a.local else { continue };
            if let Some(prefix) = prefixes.iter().find(|p| p.contains(&ip)) {
                return Err(PreflightError::Overlap {
                    what: "address",
                    host: format!("{ip}/{} on {}", a.prefixlen.unwrap_or(0), link.ifname),
                    prefix: *prefix,
                });
            }
        }
    }
    for family in ["-4", "-6"] {
        let text = netcmd::run(None, "ip", &[family, "-j", "route", "show", "table", "all"], None)
            .map_err(|e| PreflightError::HostState(netcmd::error_chain(&e)))?;
        let routes: Vec<RouteJson> =
            serde_json::from_str(&text).map_err(|e| PreflightError::HostState(netcmd::error_chain(&e)))?;
        for r in routes {
            let Some(net) = parse_route_dst(&r.dst) else { continue };
            if net.prefix_len() == 0 {
                continue;
            }
            if let Some(prefix) = prefixes.iter().find(|p| p.contains(&net) || net.contains(*p)) {
                return Err(PreflightError::Overlap {
                    what: "route",
                    host: format!("{} dev {}", r.dst, r.dev.as_deref().unwrap_or("?")),
                    prefix: *prefix,
                });
            }
        }
    }
    Ok(())
}

/// `ip -j route` writes a host route as a bare address and skips non-unicast types' prefixes
/// inconsistently; anything unparsable (e.g. "default", multicast keywords) is not a lab
/// prefix.
fn parse_route_dst(dst: &str) -> Option<IpNet> {
    dst.parse::<IpNet>().ok().or_else(|| dst.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Topology;

    #[test]
    fn required_programs_follow_the_plan() {
        let plan = LabPlan::from_topology(&Topology::open_lab().unwrap()).unwrap();
        let p = required_programs(&plan);
        assert!(p.contains(&"iptables-restore") && !p.contains(&"nft") && !p.contains(&"bridge"));
        let text = crate::topology::OPEN_TOPOLOGY
            .replace("proxy_mode: iptables", "proxy_mode: nftables")
            .replace("overlay: routed", "overlay: vxlan");
        let plan = LabPlan::from_topology(&Topology::parse(&text).unwrap()).unwrap();
        let p = required_programs(&plan);
        assert!(p.contains(&"nft") && p.contains(&"bridge"));
    }

    #[test]
    fn route_destinations_parse() {
        assert_eq!(parse_route_dst("10.244.0.0/16"), "10.244.0.0/16".parse().ok());
        assert_eq!(parse_route_dst("10.0.0.1"), "10.0.0.1/32".parse().ok());
        assert_eq!(parse_route_dst("default"), None);
    }
}
