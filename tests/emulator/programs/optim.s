# SGD (momentum, weight decay; then Nesterov from a non-zero buffer) and Adam steps on
# cluster 0, hyperparameters in fr0..fr10.
.target acf-small
.tensor P dram 0x0000 f32[4,64]
.tensor OUT dram 0x1000 f32[7,64]
    ld c0, sp[0x0], dram[P], dense, rows=4, cols=64 sig(t1)
    fset c0, fr0, 0.1
    fset c0, fr1, 0.9
    fset c0, fr2, 0.0
    fset c0, fr3, 0.01
    fset c0, fr4, 0.001
    fset c0, fr5, 0.1
    fset c0, fr6, 0.001
    fset c0, fr7, 1e-8
    fset c0, fr8, 0.0
    fset c0, fr9, 0.1
    fset c0, fr10, 0.001
    vop c0, copy, sp[0x400], sp[0x0], rows=1, cols=64 wait(t1)
    vop c0, copy, sp[0x700], sp[0x0], rows=1, cols=64
    vop c0, copy, sp[0x800], sp[0x300], rows=1, cols=64
    sgd c0, sp[0x0], sp[0x100], sp[0x200], n=64, fr=fr0
    sgd c0, sp[0x700], sp[0x100], sp[0x800], n=64, fr=fr0, nesterov=1
    adam c0, sp[0x400], sp[0x100], sp[0x500], sp[0x600], n=64, fr=fr4 sig(t2)
    st c0, dram[OUT], sp[0x0], dense, rows=1, cols=64 wait(t2)
    st c0, dram[OUT+0x100], sp[0x200], dense, rows=1, cols=64
    st c0, dram[OUT+0x200], sp[0x400], dense, rows=3, cols=64
    st c0, dram[OUT+0x500], sp[0x700], dense, rows=1, cols=64
    st c0, dram[OUT+0x600], sp[0x800], dense, rows=1, cols=64
    halt
