//! Rule 4, a service without ready endpoints (runbook 1.5: `kubectl get endpoints` must be a
//! non-empty ip:port list). Read from the inventory; the matrix says whether anyone is hurt
//! (connections to the VIP fail: Critical) or not yet (Warning), and the nodes' NAT rules show
//! kube-proxy's REJECT for it. Failing VIP cells, and lookups of a headless service's name that
//! find nothing, are claimed.

use netdiag_model::dns::DnsName;
use netdiag_model::inspect::NatProtocol;
use netdiag_model::probe::ProbeKind;
use netdiag_model::{CulpritKind, DnsFailure, Outcome, ServiceRef, Severity};

use super::super::context::{NatLookup, join};
use super::super::evidence::{Analysis, Obs};
use super::super::report::{Draft, ids};
use crate::matrix::Destination;

/// Whether a DNS cell asked for the service's own name (`<svc>.<ns>`, with or without the
/// cluster suffix).
pub(super) fn asks_for(name: &DnsName, svc: &ServiceRef) -> bool {
    let short = format!("{}.{}", svc.name, svc.namespace);
    let asked = name.as_str().trim_end_matches('.');
    asked == short || asked.starts_with(&format!("{short}.svc"))
}

fn name_missing(o: &Obs) -> bool {
    o.failed() && matches!(o.failure(), Some(Outcome::Dns(DnsFailure::NxDomain | DnsFailure::NoRecords)))
}

pub(super) fn missing(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let empty: Vec<ServiceRef> =
        a.ctx.services.iter().filter(|(_, s)| s.backends.is_empty()).map(|(r, _)| r.clone()).collect();
    for svc in empty {
        let Some(view) = a.ctx.services.get(&svc) else { continue };
        let info = view.info;
        let vip_cells: Vec<usize> = a
            .open()
            .filter(|&i| {
                let o = &a.obs[i];
                matches!(o.kind, ProbeKind::Tcp | ProbeKind::Http)
                    && matches!(&o.dest, Destination::Service { service, .. } if *service == svc)
            })
            .collect();
        let t = a.tally(&vip_cells);
        let dns_cells: Vec<usize> = a
            .open()
            .filter(|&i| {
                let o = &a.obs[i];
                name_missing(o) && matches!(&o.dest, Destination::Dns { name, .. } if asks_for(name, &svc))
            })
            .collect();
        a.claim(&t.failing);
        a.claim(&dns_cells);
        let mut failing = t.failing.clone();
        failing.extend(&dns_cells);

        let listed = info.endpoints.len();
        let ready =
            if listed == 0 { String::new() } else { format!(" (0 of {listed} listed endpoints ready)") };
        let frontends: Vec<String> = info
            .cluster_ips
            .iter()
            .flat_map(|ip| {
                info.ports.iter().map(move |p| std::net::SocketAddr::new(*ip, p.port.get()).to_string())
            })
            .collect();
        let hurt = if !t.failing.is_empty() {
            let sources: std::collections::BTreeSet<_> =
                t.failing.iter().map(|&i| &a.obs[i].source).collect();
            format!(": connections to {} fail from {} sources", join(&frontends), sources.len())
        } else if !dns_cells.is_empty() {
            ": its name resolves to nothing".to_owned()
        } else {
            String::new()
        };
        let verdict = format!("service {svc} has no ready endpoints{ready}{hurt}");
        let mut evidence = vec![format!(
            "the inventory lists {listed} endpoints for {svc}, none ready{}",
            if info.is_headless() { " (headless: its DNS name has no records)" } else { "" }
        )];
        for node in a.ctx.node_reports.keys() {
            for ip in &info.cluster_ips {
                for p in info.ports.iter().filter(|p| p.protocol == netdiag_model::inventory::Protocol::Tcp) {
                    if a.ctx.nat_frontend(node, *ip, p.port, NatProtocol::Tcp) == NatLookup::NoTargets {
                        evidence.push(format!(
                            "{node}'s rules reject {}: kube-proxy has no endpoint for it",
                            std::net::SocketAddr::new(*ip, p.port.get())
                        ));
                    }
                }
            }
        }
        evidence.extend(a.cell_lines(&failing));
        let severity = if failing.is_empty() { Severity::Warning } else { Severity::Critical };
        let (ns, name) = (&svc.namespace, &svc.name);
        out.push(
            Draft::new(
                ids::SERVICE_NO_ENDPOINTS,
                severity,
                (CulpritKind::Service, svc.to_string()),
                "1.5",
                verdict,
            )
            .affected(a.paths(&failing))
            .evidence(evidence)
            .suggestion(format!(
                "`kubectl -n {ns} get endpoints {name}`; compare the service's selector with the pods' \
                     labels (`kubectl -n {ns} get pods --show-labels`) and check those pods are Ready \
                     (readiness probe, containerPort name)"
            )),
        );
    }
}
