# Hardware loop with address registers, a barrier, and torus switching.
.target acf-small
.tensor X dram 0x0000 f32[4,32]
.tensor Y dram 0x1000 f32[4,32]
    setar ar1, 0
    loop 4, body_end
        ld c0, sp[0x0+ar1], dram[X+ar1], dense, rows=1, cols=32 sig(t1)
        vop c0, mul, sp[0x200+ar1], sp[0x0+ar1], rows=1, cols=32, bmode=imm, imm=3.0 wait(t1) sig(t2)
        st c0, dram[Y+ar1], sp[0x200+ar1], dense, rows=1, cols=32 wait(t2)
        addar ar1, 128
body_end:
    barrier
    noc.topo torus
    noc.topo mesh
    halt
