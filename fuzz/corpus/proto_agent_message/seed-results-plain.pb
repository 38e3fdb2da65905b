ÛT


tidbdemo-tikv-0" 

tidbdemo-pd
10.96.0.20Ë (ú8€Ğ•ÿ¼1B	connected0
node-1
node-2172.29.0.12 8€Ğ•ÿ¼1H‰


tidbdemo-tikv-03"1
demo-pd.tidb.svc.cluster.local.
10.96.0.10  (ú8€Ğ•ÿ¼1B	connectedj
10.96.0.20j
10.96.0.21r
10.96.0.10x


tidbdemo-tikv-0(
&

tidb	demo-pd-0fd00:10:244::2? ((08€Ğ•ÿ¼1B#503 Service Unavailable
retry laterX÷G


tidbdemo-tikv-0*

10.244.2.3 2(ú8€Ğ•ÿ¼1B	connectedHP`ø
