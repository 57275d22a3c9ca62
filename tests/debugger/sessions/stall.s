# A crafted stall: c0.mac waits for t1 (a quick vector op) and t128 (shared: it crosses
# clusters), which a sync on c1.noc signals only once the long load on c1.ld (t5) has landed.
.target acf-small
.tensor A dram 0x0000 f32[64,64]
    ld c1, sp[0x0], dram[A], dense, rows=64, cols=64 sig(t5)
    vop c0, copy, sp[0x0], sp[0x400], rows=16, cols=16 sig(t1)
    sync c1, noc wait(t5) sig(t128)
mac:
    mm c0, acc[0], sp[0x0], sp[0x0], m=16, n=16, k=16 wait(t1, t128)
    halt
