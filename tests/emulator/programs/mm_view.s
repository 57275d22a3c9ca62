# Convolution taps read in place through MAC-unit view registers (no gathers): a 3x3
# valid conv of a 2-channel 6x6 plane X by W (OIHW, 4 x 2 x 3 x 3) as 9 accumulated mm,
# the tap-0 product again with A read transposed, the sampled weight gradient of the
# centre tap, G = (DY . window^T) at S, whose window operand is read transposed, and a
# single-channel weight gradient H over two "images" (X's planes), stacked along k by
# blocks of runs, and two taps' products interleaved column by column into I through a
# destination view (as the stride phases of a transposed conv).
.target acf-small
.tensor X dram 0x0000 f32[2,36]
.tensor W dram 0x0400 f32[4,18]
.tensor DY dram 0x0800 f32[4,16]
.tensor S dram 0x0c00 f32[4,2]
.tensor Y dram 0x1000 f32[4,16]
.tensor Z dram 0x1400 f32[4,16]
.tensor G dram 0x1800 f32[4,2]
.tensor DY2 dram 0x1c00 f32[4,32]
.tensor H dram 0x2000 f32[4,1]
.tensor I dram 0x2400 f32[4,32]
    ld c0, sp[0x000], dram[X], dense, rows=2, cols=36 sig(t1)
    ld c0, sp[0x200], dram[W], dense, rows=4, cols=18 sig(t2)
    ld c0, sp[0x400], dram[DY], dense, rows=4, cols=16
    ld c0, sp[0x500], dram[S], dense, rows=4, cols=2
    ld c0, sp[0x600], dram[DY2], dense, rows=4, cols=32 sig(t3)
    # A = W[:, :, kh, kw] (4 x 2): rows 18 apart, channels 9 apart
    mview c0, 1, 2, 18, 0, 9
    # B = the tap's window (2 x 16): channels 36 apart, 4 runs of 4 pixels, 6 apart
    mview c0, 2, 4, 36, 6, 1
    # A^T stored 2 x 4 (k x m): channels 9 apart, the 4 output channels 18 apart
    mview c0, 3, 4, 9, 0, 18
    # the centre windows of both planes as one 1 x 32 row: blocks of 4 runs, 36 apart
    mview c0, 4, 4, 0, 6, 1, d1=4, s3=36
    # C rows 32 apart, its 16 columns every other element
    mview c0, 5, 16, 32, 0, 2
    mm c0, acc[0x0], sp[0x200], sp[0x000], m=4, n=16, k=2, va=1, vb=2 wait(t1, t2)
    mm c0, acc[0x0], sp[0x204], sp[0x004], m=4, n=16, k=2, accum=1, va=1, vb=2
    mm c0, acc[0x0], sp[0x208], sp[0x008], m=4, n=16, k=2, accum=1, va=1, vb=2
    mm c0, acc[0x0], sp[0x20c], sp[0x018], m=4, n=16, k=2, accum=1, va=1, vb=2
    mm c0, acc[0x0], sp[0x210], sp[0x01c], m=4, n=16, k=2, accum=1, va=1, vb=2
    mm c0, acc[0x0], sp[0x214], sp[0x020], m=4, n=16, k=2, accum=1, va=1, vb=2
    mm c0, acc[0x0], sp[0x218], sp[0x030], m=4, n=16, k=2, accum=1, va=1, vb=2
    mm c0, acc[0x0], sp[0x21c], sp[0x034], m=4, n=16, k=2, accum=1, va=1, vb=2
    mm c0, acc[0x0], sp[0x220], sp[0x038], m=4, n=16, k=2, accum=1, va=1, vb=2
    mm c0, acc[0x200], sp[0x200], sp[0x000], m=4, n=16, k=2, ta=1, va=3, vb=2
    # the centre tap's window stored n x k (2 channels x 16 pixels): tb=1
    sddmm c0, acc[0x400], sp[0x400], sp[0x01c], sp[0x500], m=4, n=2, k=16, tb=1, vb=2 wait(t3) sig(t4)
    st c0, dram[Y], acc[0x0], dense, rows=4, cols=16 wait(t4)
    st c0, dram[Z], acc[0x200], dense, rows=4, cols=16
    mm c0, acc[0x600], sp[0x600], sp[0x01c], m=4, n=1, k=32, tb=1, vb=4 sig(t5)
    st c0, dram[G], acc[0x400], dense, rows=4, cols=2
    st c0, dram[H], acc[0x600], dense, rows=4, cols=1 wait(t5)
    mm c0, acc[0x800], sp[0x200], sp[0x000], m=4, n=16, k=2, va=1, vb=2, vd=5
    mm c0, acc[0x804], sp[0x210], sp[0x01c], m=4, n=16, k=2, va=1, vb=2, vd=5 sig(t6)
    st c0, dram[I], acc[0x800], dense, rows=4, cols=32 wait(t6)
    halt
