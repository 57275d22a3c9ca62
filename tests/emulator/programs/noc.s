# NoC on all four clusters: configuration, multicast from DRAM, send/recv, reduction.
# Tokens between clusters (or from cfg) are shared ids (t128 and up); the rest are local.
.target acf-small
.tensor V dram 0x0000 f32[64]
.tensor OUT dram 0x1000 f32[4,64]
.tensor RED dram 0x2000 f32[64]
.tensor SND dram 0x3000 f32[64]
    noc.mcast 1, 0, 0, 1, 1 sig(t128)
    noc.route yx
    noc.pin c0, c3, c1
    noc.clear
    noc.route xy
    bcast c0, 1, sp[0x0], dram[V], 256 wait(t128)
    sync c0, noc sig(t3, t129)
    sync c0, noc sig(t130, t131)
    vop c0, mul, sp[0x100], sp[0x0], rows=1, cols=64, bmode=imm, imm=1.0 wait(t3) sig(t132, t12)
    vop c1, mul, sp[0x100], sp[0x0], rows=1, cols=64, bmode=imm, imm=2.0 wait(t129) sig(t132, t9)
    vop c2, mul, sp[0x100], sp[0x0], rows=1, cols=64, bmode=imm, imm=3.0 wait(t130) sig(t133, t14)
    vop c3, mul, sp[0x100], sp[0x0], rows=1, cols=64, bmode=imm, imm=4.0 wait(t131) sig(t133, t15)
    sync c0, noc wait(t132, t132)
    reduce c0, 1, sp[0x200], sp[0x100], n=64 wait(t133, t133) sig(t11)
    send c1, c2, sp[0x400], sp[0x100], 256 wait(t9) sig(t13)
    recv c2, c1 sig(t10)
    st c2, dram[SND], sp[0x400], dense, rows=1, cols=64 wait(t10)
    st c0, dram[RED], sp[0x200], dense, rows=1, cols=64 wait(t11)
    st c0, dram[OUT], sp[0x100], dense, rows=1, cols=64 wait(t12)
    st c1, dram[OUT+0x100], sp[0x100], dense, rows=1, cols=64 wait(t13)
    st c2, dram[OUT+0x200], sp[0x100], dense, rows=1, cols=64 wait(t14)
    st c3, dram[OUT+0x300], sp[0x100], dense, rows=1, cols=64 wait(t15)
    halt
