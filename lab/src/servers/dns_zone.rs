//! The cluster's DNS data as a pure lookup table, built from an [`Inventory`]: what the lab's
//! cluster DNS knows, with no sockets and no wire format.
//!
//! Names follow the Kubernetes DNS specification (and CoreDNS's `pods verified` mode):
//!
//! * `<svc>.<ns>.svc.<domain>`: a service with cluster IPs answers them (A for IPv4, AAAA for
//!   IPv6); a headless service answers one record per distinct ready endpoint address.
//! * `<host>.<svc>.<ns>.svc.<domain>`: for each ready endpoint of a headless service, where
//!   `<host>` is the endpoint's `hostname`, else its pod's name, else its address with dashes.
//! * `<a-b-c-d>.<ns>.pod.<domain>`: a pod address in its namespace (IPv6 with `-` for `:`; any
//!   spelling of the address is accepted, as CoreDNS does).
//!
//! Architecture invariant: a name with no record and no name below it does not exist
//! ([`Answer::NxDomain`]), so a headless service without ready endpoints is NXDOMAIN, as with
//! CoreDNS. A name that exists only because names exist below it (`tidb.svc.cluster.local`),
//! and the zone apex, answer [`Answer::NoData`]. Everything outside the domain is NXDOMAIN: the
//! lab is sealed and has no upstream.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::RecordType;
use netdiag_model::inventory::{EndpointInfo, Inventory, ServiceInfo};

/// What the zone says about one (name, type) question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The name has these addresses of the asked type (never empty).
    Records(Vec<IpAddr>),
    /// The name exists but has no record of the asked type.
    NoData,
    /// The name does not exist.
    NxDomain,
}

/// The lab cluster's DNS names, immutable once built; replace the whole zone to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsZone {
    /// Lowercase, without a trailing dot.
    domain: String,
    /// Owner name (lowercase, no trailing dot) → addresses in inventory order, no duplicates.
    records: HashMap<String, Vec<IpAddr>>,
    /// Every name that exists: owners of records, their ancestors down to the apex, and the
    /// apex with its `svc` and `pod` subtrees.
    names: HashSet<String>,
}

impl DnsZone {
    /// Builds the zone for the inventory's cluster domain.
    pub fn from_inventory(inv: &Inventory) -> Self {
        let mut zone = Self::empty(&inv.cluster.domain);
        for pod in &inv.pods {
            for ip in &pod.ips {
                if let Some(label) = dashed(*ip) {
                    let name = zone.under(&format!("{label}.{}.pod", pod.namespace));
                    zone.add(name, *ip);
                }
            }
        }
        for svc in &inv.services {
            zone.add_service(svc);
        }
        zone
    }

    /// A zone with only its apex and the empty `svc` and `pod` subtrees.
    pub fn empty(domain: &str) -> Self {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut zone = Self { domain, records: HashMap::new(), names: HashSet::new() };
        for name in [String::new(), "svc".to_owned(), "pod".to_owned()] {
            let name = zone.under(&name);
            zone.names.insert(name);
        }
        zone
    }

    /// The cluster domain, lowercase and without a trailing dot (`cluster.local`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether `name` is the apex or below it, i.e. whether this zone is the authority for it.
    pub fn contains(&self, name: &str) -> bool {
        normalize(name).is_some_and(|n| self.is_in_zone(&n))
    }

    /// Answers a question; `name` is matched case-insensitively, with or without a final dot.
    /// `ANY` returns every address of the name; types other than A, AAAA and ANY are NODATA
    /// wherever the name exists.
    pub fn lookup(&self, name: &str, qtype: RecordType) -> Answer {
        let Some(name) = normalize(name) else { return Answer::NxDomain };
        if !self.is_in_zone(&name) {
            return Answer::NxDomain;
        }
        let name = self.canonical_pod_name(&name).unwrap_or(name);
        let Some(all) = self.records.get(&name) else {
            return if self.names.contains(&name) { Answer::NoData } else { Answer::NxDomain };
        };
        let wanted: Vec<IpAddr> = all
            .iter()
            .copied()
            .filter(|ip| match qtype {
                RecordType::A => ip.is_ipv4(),
                RecordType::AAAA => ip.is_ipv6(),
                RecordType::ANY => true,
                _ => false,
            })
            .collect();
        if wanted.is_empty() { Answer::NoData } else { Answer::Records(wanted) }
    }

    fn add_service(&mut self, svc: &ServiceInfo) {
        let base = self.under(&format!("{}.{}.svc", svc.name, svc.namespace));
        if !svc.is_headless() {
            for ip in &svc.cluster_ips {
                self.add(base.clone(), *ip);
            }
            return;
        }
        for ep in svc.ready_endpoints() {
            self.add(base.clone(), ep.ip);
            if let Some(host) = endpoint_host(ep) {
                self.add(format!("{host}.{base}"), ep.ip);
            }
        }
    }

    fn add(&mut self, name: String, ip: IpAddr) {
        self.add_ancestors(&name);
        let ips = self.records.entry(name).or_default();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }

    /// Records `name` and every name between it and the apex as existing.
    fn add_ancestors(&mut self, name: &str) {
        let mut rest = name;
        loop {
            if !self.names.insert(rest.to_owned()) || rest == self.domain {
                // Already present: its ancestors were added with it.
                return;
            }
            match rest.split_once('.') {
                Some((_, parent)) => rest = parent,
                None => return,
            }
        }
    }

    fn under(&self, prefix: &str) -> String {
        match (prefix.is_empty(), self.domain.is_empty()) {
            (true, _) => self.domain.clone(),
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{}", self.domain),
        }
    }

    fn is_in_zone(&self, name: &str) -> bool {
        self.domain.is_empty()
            || name == self.domain
            || name.strip_suffix(self.domain.as_str()).is_some_and(|head| head.ends_with('.'))
    }

    /// Rewrites `<any spelling of an ip>.<ns>.pod.<domain>` to the spelling the zone stores.
    fn canonical_pod_name(&self, name: &str) -> Option<String> {
        let (label, rest) = name.split_once('.')?;
        let ns = rest.strip_suffix(&self.under("pod"))?.strip_suffix('.')?;
        if ns.is_empty() || ns.contains('.') {
            return None;
        }
        let ip = undashed(label)?;
        Some(format!("{}.{rest}", dashed(ip)?))
    }
}

/// The DNS label of a headless endpoint: its hostname, else its pod's name, else its address.
fn endpoint_host(ep: &EndpointInfo) -> Option<String> {
    let from_pod = ep.pod.as_ref().map(|p| p.name.as_str().to_owned());
    [ep.hostname.as_ref().map(|h| h.to_ascii_lowercase()), from_pod]
        .into_iter()
        .flatten()
        .find(|h| is_label(h))
        .or_else(|| dashed(ep.ip))
}

fn is_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `10.244.1.2` → `10-244-1-2`, `fd00::5` → `fd00--5`; `None` if the result is not one label
/// (IPv4-mapped IPv6 addresses print with dots).
fn dashed(ip: IpAddr) -> Option<String> {
    let s = match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    };
    is_label(&s).then_some(s)
}

fn undashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Lowercases and drops one final dot; `None` for names that cannot exist (empty labels).
fn normalize(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
