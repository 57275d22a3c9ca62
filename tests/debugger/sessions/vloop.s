# One vector op 200 times: 402 events, so checkpoints (every 256 events) fall mid-loop.
.target acf-small
    loop 200, e
        vop c0, mul, sp[0x200], sp[0x0], rows=1, cols=32, bmode=imm, imm=3.0
e:
    halt
