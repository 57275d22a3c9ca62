# Memory paths on cluster 2: DMA, loads from the global buffer, enc/dec, sparse store, gather.
.target acf-small
.tensor D dram 0x0000 f32[16,16]
.tensor E dram 0x1000 f32[16,16] csr
.tensor F dram 0x3000 f32[16,16]
.tensor GTH dram 0x4000 f32[4,8]
.tensor H dram 0x5000 f32[16,16]
    dma.ld gb[0x0], dram[D], rows=16, rowbytes=64 sig(t128)
    ld c2, sp[0x0], gb[0x0], dense, rows=16, cols=16 wait(t128) sig(t2)
    enc c2, sp[0x1000], sp[0x0], bitmap, rows=16, cols=16, cap=2048 wait(t2)
    dec c2, sp[0x2000], sp[0x1000], bitmap, rows=16, cols=16 sig(t4)
    st c2, dram[E], sp[0x0], csr, rows=16, cols=16, cap=2048 wait(t4)
    st c2, dram[F], sp[0x2000], dense, rows=16, cols=16
    ldg c2, sp[0x3000], dram[D], 4, 1, 8, 16, 0, 2 sig(t5)
    st c2, dram[GTH], sp[0x3000], dense, rows=4, cols=8 wait(t5)
    dma.st dram[H], gb[0x0], rows=16, rowbytes=64
    halt
