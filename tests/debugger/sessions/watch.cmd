# program: pipeline.s
# inputs: pipeline.npz
# Watchpoints: writes of tensor Y, a read of a scratchpad range, a value change.
watch Y
watch -read c0.sp[0x0:0x80]
continue
continue
x/4f dram[0x1000]
info watchpoints
delete
watch -change c0.sp[0x380:0x400]
continue
x/4f c0.sp[0x380]
print Y
