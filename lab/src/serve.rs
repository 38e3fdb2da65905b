//! Running a lab's servers: the cluster DNS in its pod and every app listener in its pod, on
//! sockets created inside those pods' namespaces, until shutdown. Also follows the fault list
//! for the faults that live in a server: DNS SERVFAIL, and a closed port (its listener is
//! closed, so the pod's kernel answers with a reset as it does when nothing listens; it is
//! opened again when the fault heals).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use netdiag_model::PodRef;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::desired;
use crate::plan::{LabPlan, PodPlan};
use crate::servers::{self, AppInfo, DnsMode, DnsZone, PdCluster, PdMember, SharedZone};
use crate::state::LabState;
use crate::topology::{AppKind, ServiceType};

/// How often the server re-reads the fault list.
const FAULT_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open {what} for pod {pod} on {addr}")]
    Bind {
        what: &'static str,
        pod: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create a socket inside pod {pod}'s namespace")]
    Netns {
        pod: String,
        #[source]
        source: netdiag_netns::NetnsError,
    },
}

fn bind_in(pod: &PodPlan, what: &'static str, addr: SocketAddr, ty: Type) -> Result<Socket, ServeError> {
    let domain = if addr.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let protocol = if ty == Type::STREAM { Protocol::TCP } else { Protocol::UDP };
    let path = LabPlan::netns_path(&pod.netns);
    let socket = netdiag_netns::socket_in(&path, domain, ty, Some(protocol))
        .map_err(|source| ServeError::Netns { pod: pod.pod.to_string(), source })?;
    let bind_err = |source| ServeError::Bind { what, pod: pod.pod.to_string(), addr, source };
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(bind_err)?;
    }
    socket.set_reuse_address(true).map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    if ty == Type::STREAM {
        socket.listen(1024).map_err(bind_err)?;
    }
    Ok(socket)
}

fn tcp_listener(
    pod: &PodPlan,
    what: &'static str,
    addr: SocketAddr,
) -> Result<tokio::net::TcpListener, ServeError> {
    let socket = bind_in(pod, what, addr, Type::STREAM)?;
    tokio::net::TcpListener::from_std(socket.into()).map_err(|source| ServeError::Bind {
        what,
        pod: pod.pod.to_string(),
        addr,
        source,
    })
}

fn udp_socket(
    pod: &PodPlan,
    what: &'static str,
    addr: SocketAddr,
) -> Result<tokio::net::UdpSocket, ServeError> {
    let socket = bind_in(pod, what, addr, Type::DGRAM)?;
    tokio::net::UdpSocket::from_std(socket.into()).map_err(|source| ServeError::Bind {
        what,
        pod: pod.pod.to_string(),
        addr,
        source,
    })
}

/// The wildcard addresses a pod listens on: v4, plus v6 when the pod is dual-stack.
fn wildcards(pod: &PodPlan, port: u16) -> Vec<SocketAddr> {
    let mut v = vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)];
    if pod.ip_v6.is_some() {
        v.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    v
}

fn app_kind(kind: AppKind) -> servers::AppKind {
    match kind {
        AppKind::Pd => servers::AppKind::Pd,
        AppKind::Tikv => servers::AppKind::Tikv,
        AppKind::Tidb => servers::AppKind::Tidb,
        AppKind::Discovery => servers::AppKind::Discovery,
        AppKind::Dns | AppKind::Generic => servers::AppKind::Generic,
    }
}

/// The PD set a PD pod belongs to: every PD pod of its namespace, named through the headless
/// service that selects them (tidb-operator's `<cluster>-pd-peer`).
fn pd_cluster(plan: &LabPlan, pod: &PodPlan) -> Option<PdCluster> {
    let index = plan.pods.iter().position(|p| p.pod == pod.pod)?;
    let peer =
        plan.services.iter().find(|s| s.kind == ServiceType::Headless && s.endpoints.contains(&index))?;
    let members = peer
        .endpoints
        .iter()
        .map(|&i| &plan.pods[i])
        .filter(|p| p.app == AppKind::Pd)
        .filter_map(|p| {
            let client = *p.ports.first()?;
            let peer_port = p.ports.get(1).copied().unwrap_or(client);
            Some(PdMember::in_peer_service(
                &p.pod.name,
                &peer.service.name,
                &p.pod.namespace,
                client,
                peer_port,
            ))
        })
        .collect();
    Some(PdCluster::new(members))
}

/// Binds every lab server's sockets (so errors surface before anything runs) and returns the
/// tasks serving them plus the DNS mode switch.
fn start(
    plan: &LabPlan,
    state: &LabState,
    tasks: &mut JoinSet<()>,
) -> Result<(watch::Sender<DnsMode>, watch::Sender<ClosedPorts>), ServeError> {
    let zone = SharedZone::new(DnsZone::from_inventory(&plan.inventory(&state.dir)));
    let (mode_tx, mode_rx) = watch::channel(DnsMode::Normal);
    let (closed_tx, closed_rx) = watch::channel(ClosedPorts::new());
    let mut listeners = 0usize;
    for pod in plan.pods.iter().filter(|p| p.listen) {
        if pod.app == AppKind::Dns {
            for addr in wildcards(pod, 53) {
                let udp = udp_socket(pod, "the DNS UDP socket", addr)?;
                let tcp = tcp_listener(pod, "the DNS TCP listener", addr)?;
                tasks.spawn(servers::serve_dns(udp, tcp, zone.clone(), mode_rx.clone()));
                listeners += 2;
            }
            continue;
        }
        for (i, port) in pod.ports.iter().enumerate() {
            let mut app = AppInfo::new(pod.pod.clone(), pod.ips(), *port, app_kind(pod.app));
            if pod.app == AppKind::Pd
                && i == 0
                && let Some(cluster) = pd_cluster(plan, pod)
            {
                app = app.with_pd_api(cluster);
            }
            for addr in wildcards(pod, port.get()) {
                let listener = tcp_listener(pod, "the app listener", addr)?;
                tasks.spawn(serve_port(pod.clone(), addr, listener, app.clone(), closed_rx.clone()));
                listeners += 1;
            }
        }
    }
    info!(lab = %plan.name, listeners, "lab servers listening");
    Ok((mode_tx, closed_tx))
}

/// The pods' ports a `port-closed` fault closes.
type ClosedPorts = BTreeSet<(PodRef, u16)>;

/// Serves one app port: closes the listener while a fault closes the port, and binds it
/// again when the fault heals.
async fn serve_port(
    pod: PodPlan,
    addr: SocketAddr,
    listener: tokio::net::TcpListener,
    app: AppInfo,
    mut closed: watch::Receiver<ClosedPorts>,
) {
    let key = (pod.pod.clone(), addr.port());
    let mut listener = Some(listener);
    loop {
        let shut = closed.borrow_and_update().contains(&key);
        match (shut, listener.take()) {
            (false, Some(l)) => {
                tokio::select! {
                    () = servers::serve_app(l, app.clone()) => return,
                    changed = closed.changed() => if changed.is_err() { return },
                }
                // Dropped: closed when the fault asks for it, bound again below otherwise.
                continue;
            }
            (false, None) => match tcp_listener(&pod, "the app listener", addr) {
                Ok(l) => {
                    info!(pod = %pod.pod, port = addr.port(), "port open again");
                    listener = Some(l);
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "cannot open the port again; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            (true, l) => {
                if l.is_some() {
                    info!(pod = %pod.pod, port = addr.port(), "port closed by a fault");
                }
                if closed.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Serves the lab until `shutdown` completes. Writes the pid file once every socket is bound,
/// so `lab up` knows the lab answers.
pub async fn serve(
    plan: &LabPlan,
    state: &LabState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let mut tasks = JoinSet::new();
    let (mode, closed) = start(plan, state, &mut tasks)?;
    if let Err(e) = std::fs::write(state.pid_path(), std::process::id().to_string()) {
        warn!(error = %e, "cannot write the lab server's pid file");
    }
    let follow = async {
        let mut ticker = tokio::time::interval(FAULT_POLL);
        loop {
            ticker.tick().await;
            match state.read_faults() {
                Ok(faults) => {
                    let want =
                        if desired::dns_servfail(&faults) { DnsMode::ServFail } else { DnsMode::Normal };
                    mode.send_if_modified(|m| {
                        let changed = *m != want;
                        if changed {
                            info!(mode = ?want, "cluster DNS mode changed");
                        }
                        *m = want;
                        changed
                    });
                    let shut = desired::closed_ports(&faults);
                    closed.send_if_modified(|c| {
                        let changed = *c != shut;
                        *c = shut;
                        changed
                    });
                }
                Err(e) => debug!(error = %e, "cannot read the fault list"),
            }
        }
    };
    tokio::select! {
        () = shutdown => {}
        () = follow => {}
    }
    tasks.abort_all();
    let _ = std::fs::remove_file(state.pid_path());
    Ok(())
}
