//! The lab's topology file (`netdiag lab up --topology FILE`) and everything `lab up` derives
//! from it before touching the system: the checked `Topology` (with and without `--ipv6`), the
//! `LabPlan` (addresses, interfaces, endpoints), each node's kube-proxy rules in both families,
//! each pod's resolv.conf and the inventory. Properties: no panic (address arithmetic included),
//! no hang, and the derived inventory validates.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use netdiag_lab::plan::LabPlan;
use netdiag_lab::rules::{self, Family};
use netdiag_lab::topology::{Overrides, Topology};

fuzz_target!(|data: &[u8]| {
    let Ok(topology) = Topology::parse(&netdiag_fuzz::text(data)) else { return };
    let dual = topology.clone().with_overrides(&Overrides { ipv6: true, ..Overrides::default() });
    for t in std::iter::once(topology).chain(dual.ok()) {
        let Ok(plan) = LabPlan::from_topology(&t) else { continue };
        for node in &plan.nodes {
            for family in Family::ALL {
                let _ = rules::render(&plan, node, family);
                let _ = rules::expected_nat(&plan, node, family);
            }
        }
        for pod in &plan.pods {
            let _ = plan.resolv_conf_text(pod);
        }
        if let Err(e) = plan.inventory(Path::new("/run/netdiag/fuzz")).validate() {
            panic!("the lab's inventory does not validate: {e}");
        }
    }
});
