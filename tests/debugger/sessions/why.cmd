# program: stall.s
# `why` in a crafted stall: c0.mac waits for t128 (a shared token), behind a sync waiting for a long load.
break cycle 100
continue
why c0.mac
why c1.noc
why c0.vec
info tokens
info queues
where
continue
