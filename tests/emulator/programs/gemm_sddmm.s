# Sparse GEMM and SDDMM on cluster 0: Y = W X (W in CSR), G = (X W^T) sampled at S.
.target acf-small
.tensor W dram 0x0000 f32[16,16] csr
.tensor X dram 0x1000 f32[16,16]
.tensor Y dram 0x2000 f32[16,16]
.tensor S dram 0x3000 f32[16,16]
.tensor G dram 0x4000 f32[16,16]
    ld c0, sp[0x0000], dram[W], csr, rows=16, cols=16 sig(t1)
    ld c0, sp[0x0400], dram[X], dense, rows=16, cols=16 sig(t2)
    ld c0, sp[0x0800], dram[S], dense, rows=16, cols=16 sig(t4)
    mm c0, acc[0x0], sp[0x0000], sp[0x0400], m=16, n=16, k=16 wait(t1, t2)
    sddmm c0, acc[0x400], sp[0x0400], sp[0x0], sp[0x800], m=16, n=16, k=16, tb=1 wait(t4) sig(t5)
    st c0, dram[Y], acc[0x0], dense, rows=16, cols=16 wait(t5)
    st c0, dram[G], acc[0x400], dense, rows=16, cols=16
    halt
