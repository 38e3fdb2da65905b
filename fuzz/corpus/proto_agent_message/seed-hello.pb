
‹
node-1
0.1.0-rc.1"&
tidb	demo-pd-0
10.244.1.2fd00::2"*
kube-systemkube-proxy-x172.29.0.11 *172.29.0.110:5f0c7e4e-8a43