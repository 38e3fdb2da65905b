‚
node-1ôÓ•ÿ¼1/
eth0 Ü*172.29.0.11/24*
fe80::1/642veth" 
	0.0.0.0/0
172.29.0.1eth0(þ"!
10.244.9.0/24"172.29.0.11(þ0d*0

172.29.0.1eth0	REACHABLE"02:42:ac:1d:00:012K
tidb/demo-pd:client
10.96.0.20Ë"tcp* 

10.244.1.2ËKUBE-SEP-ABCDEF2€ë"udp0:
net.ipv4.ip_forward1B9

10.96.0.10tidb.svc.cluster.localcluster.local (HRnft: permission denied