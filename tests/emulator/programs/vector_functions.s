# Every remaining vector function on cluster 2 (vector.s has the broadcast modes, gelu,
# relu_bwd, mask, gt and the reductions). P = |A| + 0.5 feeds the ones that need x > 0.
.target acf-small
.tensor A dram 0x0000 f32[8,16]
.tensor B dram 0x1000 f32[8,16]
.tensor OUT dram 0x2000 f32[18,8,16]
    ld c2, sp[0x0], dram[A], dense, rows=8, cols=16 sig(t1)
    ld c2, sp[0x200], dram[B], dense, rows=8, cols=16 sig(t2)
    vop c2, abs, sp[0x400], sp[0x0], rows=8, cols=16 wait(t1, t2)
    vop c2, add, sp[0x400], sp[0x400], rows=8, cols=16, bmode=imm, imm=0.5
    vop c2, div, sp[0x1000], sp[0x0], sp[0x400], rows=8, cols=16
    vop c2, min, sp[0x1200], sp[0x0], sp[0x200], rows=8, cols=16
    vop c2, copy, sp[0x1400], sp[0x200], rows=8, cols=16
    vop c2, neg, sp[0x1600], sp[0x0], rows=8, cols=16
    vop c2, abs, sp[0x1800], sp[0x0], rows=8, cols=16
    vop c2, exp, sp[0x1a00], sp[0x0], rows=8, cols=16
    vop c2, log, sp[0x1c00], sp[0x400], rows=8, cols=16
    vop c2, sqrt, sp[0x1e00], sp[0x400], rows=8, cols=16
    vop c2, rsqrt, sp[0x2000], sp[0x400], rows=8, cols=16
    vop c2, recip, sp[0x2200], sp[0x400], rows=8, cols=16
    vop c2, tanh, sp[0x2400], sp[0x0], rows=8, cols=16
    vop c2, erf, sp[0x2600], sp[0x0], rows=8, cols=16
    vop c2, relu, sp[0x2800], sp[0x0], rows=8, cols=16
    vop c2, ge, sp[0x2a00], sp[0x0], sp[0x200], rows=8, cols=16
    vop c2, eq, sp[0x2c00], sp[0x2800], sp[0x0], rows=8, cols=16
    vop c2, square, sp[0x2e00], sp[0x0], rows=8, cols=16
    vop c2, sigmoid, sp[0x3000], sp[0x0], rows=8, cols=16
    vop c2, sub, sp[0x3200], sp[0x0], sp[0x200], rows=8, cols=16 sig(t3)
    st c2, dram[OUT], sp[0x1000], dense, rows=144, cols=16 wait(t3)
    halt
