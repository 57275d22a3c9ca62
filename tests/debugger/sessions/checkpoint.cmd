# program: vloop.s
# Reverse commands reach position 256, a checkpoint: the event that led to it is examined.
stepi 258
reverse-step
where
stepi 2
reverse-stepi
reverse-stepi
where
watch c0.sp[0x200:0x280]
stepi 2
reverse-continue
where
