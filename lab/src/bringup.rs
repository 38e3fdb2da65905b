//! Building a lab from its plan: namespaces, the underlay switch, node uplinks, pod veths,
//! the optional VXLAN overlay, then the desired state (rules, routes, sysctls) through
//! [`crate::reconcile`].
//!
//! Sealed by construction: every `ip` command here runs with `-n <lab namespace>` and every
//! veth is created inside a lab namespace with its peer placed straight into another lab
//! namespace, so no interface of the lab ever exists in the host namespace.

use std::time::{Duration, Instant};

use crate::netcmd::{self, CommandError};
use crate::plan::{
    LINK_MTU, LabPlan, POD_GATEWAY_V4, POD_GATEWAY_V6, UNDERLAY_BRIDGE, UPLINK_IF, VXLAN_ID, VXLAN_IF,
    VXLAN_MTU, VXLAN_PORT,
};
use crate::reconcile::{self, ReconcileError};
use crate::state::{LabState, StateError};
use crate::topology::Overlay;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("building the lab's {step} failed")]
    Step {
        step: &'static str,
        #[source]
        source: CommandError,
    },
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot set {key} in {netns}: {message}")]
    Sysctl { netns: String, key: String, message: String },
}

fn step(step: &'static str) -> impl FnOnce(CommandError) -> BuildError {
    move |source| BuildError::Step { step, source }
}

/// How long each phase of a bring-up took (printed by the bring-up benchmark).
#[derive(Debug, Default, Clone)]
pub struct BuildTimings {
    pub phases: Vec<(&'static str, Duration)>,
}

impl BuildTimings {
    fn mark(&mut self, phase: &'static str, since: &mut Instant) {
        self.phases.push((phase, since.elapsed()));
        *since = Instant::now();
    }

    pub fn total(&self) -> Duration {
        self.phases.iter().map(|(_, d)| *d).sum()
    }
}

/// Creates the lab's namespaces and wiring. The plan must already be recorded in `state` so a
/// crash half-way can be cleaned up by `down` or the next `up`.
pub fn build(plan: &LabPlan, state: &LabState) -> Result<BuildTimings, BuildError> {
    let mut timings = BuildTimings::default();
    let mut t = Instant::now();

    let adds: Vec<String> = plan.namespaces().iter().map(|ns| format!("netns add {ns}")).collect();
    netcmd::ip_batch(None, &adds).map_err(step("namespaces"))?;
    if plan.ipv6 {
        // Duplicate address detection would hold every new link-local address for a second,
        // during which neighbour discovery across nodes stalls. The lab's addresses are unique
        // by construction. Interfaces created (or moved in) later take the `default` values.
        for ns in plan.namespaces() {
            let keys = [("net.ipv6.conf.default.accept_dad", "0"), ("net.ipv6.conf.all.accept_dad", "0")];
            reconcile::write_sysctls(&ns, &keys).map_err(|(key, message)| BuildError::Sysctl {
                netns: ns.clone(),
                key,
                message,
            })?;
        }
    }
    timings.mark("namespaces", &mut t);

    netcmd::ip_batch(Some(&plan.underlay_netns), &underlay_commands(plan)).map_err(step("underlay"))?;
    for node in &plan.nodes {
        netcmd::ip_batch(Some(&node.netns), &node_commands(plan, node)).map_err(step("node links"))?;
    }
    timings.mark("underlay and node links", &mut t);

    for pod in &plan.pods {
        netcmd::ip_batch(Some(&pod.netns), &pod_commands(plan, pod)).map_err(step("pod links"))?;
    }
    timings.mark("pod links", &mut t);

    if plan.overlay == Overlay::Vxlan {
        for node in &plan.nodes {
            let (ip_lines, fdb_lines) = vxlan_commands(plan, node);
            netcmd::ip_batch(Some(&node.netns), &ip_lines).map_err(step("vxlan overlay"))?;
            netcmd::bridge_batch(Some(&node.netns), &fdb_lines).map_err(step("vxlan forwarding"))?;
        }
        timings.mark("vxlan overlay", &mut t);
    }

    set_base_sysctls(plan)?;
    timings.mark("sysctls", &mut t);

    for pod in &plan.pods {
        let path = crate::plan::resolv_conf_path(&state.dir, &pod.pod);
        state.write_file(&path, &plan.resolv_conf_text(pod))?;
    }
    state.write_file(&state.inventory_path(), &plan.inventory(&state.dir).to_yaml())?;
    timings.mark("inventory and resolv.conf", &mut t);

    reconcile::reconcile(plan, None, &[])?;
    timings.mark("kube-proxy rules, fault chains, routes", &mut t);
    Ok(timings)
}

fn underlay_commands(plan: &LabPlan) -> Vec<String> {
    let mut c = vec![
        "link set lo up".to_owned(),
        format!("link add {UNDERLAY_BRIDGE} type bridge"),
        format!("link set {UNDERLAY_BRIDGE} up"),
        format!("addr add {}/{} dev {UNDERLAY_BRIDGE}", plan.control_ip, plan.node_cidr.prefix_len()),
    ];
    if let (Some(ip), Some(net)) = (plan.control_ip_v6, plan.node_cidr_v6) {
        c.push(format!("addr add {ip}/{} dev {UNDERLAY_BRIDGE} nodad", net.prefix_len()));
    }
    for node in &plan.nodes {
        c.push(format!(
            "link add {} mtu {LINK_MTU} type veth peer name {UPLINK_IF} netns {}",
            node.underlay_port, node.netns
        ));
        c.push(format!("link set {} master {UNDERLAY_BRIDGE} up", node.underlay_port));
    }
    c
}

fn node_commands(plan: &LabPlan, node: &crate::plan::NodePlan) -> Vec<String> {
    let mut c = vec![
        "link set lo up".to_owned(),
        format!("link set {UPLINK_IF} up"),
        format!("addr add {}/{} dev {UPLINK_IF}", node.ip, plan.node_cidr.prefix_len()),
    ];
    if let (Some(ip), Some(net)) = (node.ip_v6, plan.node_cidr_v6) {
        c.push(format!("addr add {ip}/{} dev {UPLINK_IF} nodad", net.prefix_len()));
    }
    for pod in plan.pods.iter().filter(|p| p.node == node.name) {
        let dev = &pod.host_if;
        c.push(format!("link add {dev} mtu {} type veth peer name {UPLINK_IF} netns {}", pod.mtu, pod.netns));
        c.push(format!("link set {dev} up"));
        c.push(format!("addr add {POD_GATEWAY_V4}/32 dev {dev}"));
        c.push(format!("route add {}/32 dev {dev} scope link src {}", pod.ip, node.ip));
        if let Some(ip6) = pod.ip_v6 {
            c.push(format!("addr add {POD_GATEWAY_V6}/64 dev {dev} nodad"));
            c.push(format!("route add {ip6}/128 dev {dev}"));
        }
    }
    c
}

fn pod_commands(_plan: &LabPlan, pod: &crate::plan::PodPlan) -> Vec<String> {
    let mut c = vec![
        "link set lo up".to_owned(),
        format!("link set {UPLINK_IF} mtu {} up", pod.mtu),
        format!("addr add {}/32 dev {UPLINK_IF}", pod.ip),
    ];
    c.extend(crate::reconcile::pod_routes(pod));
    if let Some(ip6) = pod.ip_v6 {
        c.insert(3, format!("addr add {ip6}/128 dev {UPLINK_IF} nodad"));
    }
    c
}

/// flannel's VXLAN wiring with static peers: device, per-peer neighbour and forwarding entries.
fn vxlan_commands(plan: &LabPlan, node: &crate::plan::NodePlan) -> (Vec<String>, Vec<String>) {
    let mut ip = vec![
        format!(
            "link add {VXLAN_IF} type vxlan id {VXLAN_ID} local {} dev {UPLINK_IF} dstport {VXLAN_PORT} nolearning",
            node.ip
        ),
        format!("link set {VXLAN_IF} address {} mtu {VXLAN_MTU} up", node.vxlan_mac),
        format!("addr add {}/32 dev {VXLAN_IF}", node.pod_cidr.network()),
    ];
    let mut fdb = Vec::new();
    for peer in plan.nodes.iter().filter(|p| p.name != node.name) {
        ip.push(format!(
            "neigh add {} lladdr {} dev {VXLAN_IF} nud permanent",
            peer.pod_cidr.network(),
            peer.vxlan_mac
        ));
        fdb.push(format!("fdb append {} dev {VXLAN_IF} dst {}", peer.vxlan_mac, peer.ip));
    }
    (ip, fdb)
}

/// Forwarding on every node; no DAD delays in pods.
fn set_base_sysctls(plan: &LabPlan) -> Result<(), BuildError> {
    for node in &plan.nodes {
        let mut keys = vec![("net.ipv4.ip_forward", "1")];
        if plan.ipv6 {
            keys.push(("net.ipv6.conf.all.forwarding", "1"));
        }
        reconcile::write_sysctls(&node.netns, &keys).map_err(|(key, message)| BuildError::Sysctl {
            netns: node.netns.clone(),
            key,
            message,
        })?;
    }
    Ok(())
}
