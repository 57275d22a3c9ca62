# Vector unit on cluster 1: every broadcast mode, special functions, reductions, fld.
.target acf-small
.tensor A dram 0x0000 f32[8,16]
.tensor B dram 0x1000 f32[8,16]
.tensor R dram 0x2000 f32[1,16]
.tensor OUT dram 0x3000 f32[11,8,16]
.tensor RED dram 0x8000 f32[4,16]
    ld c1, sp[0x0], dram[A], dense, rows=8, cols=16 sig(t1)
    ld c1, sp[0x200], dram[B], dense, rows=8, cols=16 sig(t2)
    ld c1, sp[0x400], dram[R], dense, rows=1, cols=16 sig(t3)
    sync c1, vec wait(t1, t2)
    sync c1, vec wait(t3)
    fset c1, fr2, 0.5
    fld c1, fr3, sp[0x4]
    vop c1, add, sp[0x1000], sp[0x0], sp[0x200], rows=8, cols=16
    vop c1, mul, sp[0x1200], sp[0x0], sp[0x400], rows=8, cols=16, bmode=row
    vop c1, sub, sp[0x1400], sp[0x0], sp[0x400], rows=8, cols=16, bmode=col
    vop c1, max, sp[0x1600], sp[0x0], rows=8, cols=16, bmode=imm, imm=0.25
    vop c1, mul, sp[0x1800], sp[0x0], rows=8, cols=16, bmode=freg, imm=2
    vop c1, relu_bwd, sp[0x1a00], sp[0x0], sp[0x200], rows=8, cols=16
    vop c1, gelu, sp[0x1c00], sp[0x0], rows=8, cols=16
    vop c1, mask, sp[0x1e00], sp[0x0], sp[0x200], rows=8, cols=16
    vop c1, gt, sp[0x2000], sp[0x0], sp[0x200], rows=8, cols=16
    vop c1, gelu_bwd, sp[0x2200], sp[0x0], sp[0x200], rows=8, cols=16
    vop c1, mul, sp[0x2400], sp[0x0], rows=8, cols=16, bmode=freg, imm=3
    vred c1, sum, sp[0x3000], sp[0x0], rows=8, cols=16, axis=0
    vred c1, mean, sp[0x3040], sp[0x0], rows=8, cols=16, axis=0
    vred c1, sumsq, sp[0x3080], sp[0x0], rows=8, cols=16, axis=0
    vred c1, min, sp[0x30c0], sp[0x0], rows=8, cols=16, axis=0
    vred c1, sum, sp[0x3000], sp[0x0], rows=8, cols=16, axis=0, accum=1 sig(t4)
    st c1, dram[OUT], sp[0x1000], dense, rows=88, cols=16 wait(t4)
    st c1, dram[RED], sp[0x3000], dense, rows=4, cols=16
    halt
