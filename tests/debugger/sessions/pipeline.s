# A load -> scale -> store pipeline on two clusters, a loop, and a NaN from log(-x).
.target acf-small
.tensor X dram 0x0000 f32[4,32]
.tensor Y dram 0x1000 f32[4,32]
.tensor Z dram 0x2000 f32[1,32]
    setar ar1, 0
    loop 4, body_end
body:
        ld c0, sp[0x0+ar1], dram[X+ar1], dense, rows=1, cols=32 sig(t1)
        vop c0, mul, sp[0x200+ar1], sp[0x0+ar1], rows=1, cols=32, bmode=imm, imm=3.0 wait(t1) sig(t2)
        st c0, dram[Y+ar1], sp[0x200+ar1], dense, rows=1, cols=32 wait(t2)
        addar ar1, 128
body_end:
    barrier
    ld c1, sp[0x0], dram[X], dense, rows=1, cols=32 sig(t3)
    vop c1, log, sp[0x100], sp[0x0], rows=1, cols=32 wait(t3) sig(t4)
    st c1, dram[Z], sp[0x100], dense, rows=1, cols=32 wait(t4)
    halt
