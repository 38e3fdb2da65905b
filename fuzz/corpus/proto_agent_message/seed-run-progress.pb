"¶
run-1¬tcp2TCP connect 10.96.0.20:2379 (service tidb/demo-pd) *T


tidbdemo-tikv-0" 

tidbdemo-pd
10.96.0.20Ë (ú8€Ð•ÿ¼1B	connected2SYN-ACK after 250Âµs8¬