# ReLU outputs are sparse: compute them, encode them as CSR on the fly and store the packed
# tile, moving only its encoded bytes (cluster 1 of acf-small).
.target acf-small
.tensor X dram 0x0000 f32[16,16]
.tensor H dram 0x1000 f32[16,16] csr
    ld c1, sp[0x0], dram[X], dense, rows=16, cols=16 sig(t1)
    vop c1, relu, sp[0x400], sp[0x0], rows=16, cols=16 wait(t1) sig(t2)
    enc c1, sp[0x800], sp[0x400], csr, rows=16, cols=16, cap=1536 wait(t2) sig(t3)
    dec c1, sp[0x1000], sp[0x800], csr, rows=16, cols=16
    st c1, dram[H], sp[0x400], csr, rows=16, cols=16, cap=1536 wait(t3)
    halt
