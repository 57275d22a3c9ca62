# A 16x16 sparse-weight GEMM on acf-small: Y = W . X, W stored as CSR in DRAM.
# Cluster 0 loads both tiles, multiplies them with zero-skipping and stores Y.
.target acf-small
.tensor W dram 0x0000 f32[16,16] csr
.tensor X dram 0x1000 f32[16,16]
.tensor Y dram 0x2000 f32[16,16]

.loc "examples/gemm_small.py" 1 "fc1" 0
    ld  c0, sp[0x0000], dram[W], csr, rows=16, cols=16 sig(t1)
    ld  c0, sp[0x0400], dram[X], dense, rows=16, cols=16 sig(t2)
    mm  c0, acc[0x0], sp[0x0000], sp[0x0400], m=16, n=16, k=16 wait(t1, t2) sig(t3)
    st  c0, dram[Y], acc[0x0], dense, rows=16, cols=16 wait(t3)
    halt
