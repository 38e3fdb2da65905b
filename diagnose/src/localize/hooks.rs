//! Where a probe's request meets the nodes' packet filters: the hook on the source's node
//! (OUTPUT for the node's own namespace, FORWARD for a pod's packets, INPUT for a pod reaching
//! its own node's address), then, on another node, FORWARD into a pod there or INPUT to the
//! node itself. What the forwarding rule and the firewall layer both read, so they agree on
//! which node forwards what.

use netdiag_model::NodeName;
use netdiag_model::inspect::FilterHook;
use netdiag_model::probe::Source;

/// The (node, hook) pairs a request from `source` (on `src`) passes, source first. `dst` is
/// the node it is delivered on and whether to a pod there; None when it leaves for an address
/// no node owns yet (a service VIP before its DNAT).
pub(crate) fn hooks(
    source: &Source,
    src: &NodeName,
    dst: Option<(&NodeName, bool)>,
) -> Vec<(NodeName, FilterHook)> {
    let elsewhere = dst.is_none_or(|(d, _)| d != src);
    let to_pod = dst.is_some_and(|(_, p)| p);
    let first = match source {
        Source::Node(_) => FilterHook::Output,
        Source::Pod(_) if !elsewhere && !to_pod => FilterHook::Input,
        Source::Pod(_) => FilterHook::Forward,
    };
    let mut out = vec![(src.clone(), first)];
    if let Some((d, to_pod)) = dst
        && d != src
    {
        out.push((d.clone(), if to_pod { FilterHook::Forward } else { FilterHook::Input }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use FilterHook::*;

    #[test]
    fn each_path_meets_the_hooks_a_linux_node_runs() {
        let n = |s: &str| s.parse::<NodeName>().unwrap();
        let pod = Source::Pod("tidb/demo-pd-0".parse().unwrap());
        let node1 = Source::Node(n("node-1"));
        let (one, two) = (n("node-1"), n("node-2"));
        /// (path, source, destination node and whether a pod there, the hooks met)
        type Case<'a> = (&'a str, &'a Source, Option<(&'a NodeName, bool)>, Vec<(NodeName, FilterHook)>);
        let cases: Vec<Case<'_>> = vec![
            ("pod to a pod on its node", &pod, Some((&one, true)), vec![(one.clone(), Forward)]),
            ("pod to its node's address", &pod, Some((&one, false)), vec![(one.clone(), Input)]),
            (
                "pod to a pod elsewhere",
                &pod,
                Some((&two, true)),
                vec![(one.clone(), Forward), (two.clone(), Forward)],
            ),
            (
                "pod to another node",
                &pod,
                Some((&two, false)),
                vec![(one.clone(), Forward), (two.clone(), Input)],
            ),
            ("pod to a VIP", &pod, None, vec![(one.clone(), Forward)]),
            ("node to its own pod", &node1, Some((&one, true)), vec![(one.clone(), Output)]),
            (
                "node to a pod elsewhere",
                &node1,
                Some((&two, true)),
                vec![(one.clone(), Output), (two.clone(), Forward)],
            ),
            (
                "node to another node",
                &node1,
                Some((&two, false)),
                vec![(one.clone(), Output), (two.clone(), Input)],
            ),
        ];
        for (name, source, dst, want) in cases {
            assert_eq!(hooks(source, &one, dst), want, "{name}");
        }
    }
}
