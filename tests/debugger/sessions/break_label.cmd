# program: pipeline.s
# inputs: pipeline.npz
# A breakpoint at label `body`, on the loop body's vector unit.
break body c0.vec
continue
info queues
disas c0.vec 4
continue
print ar1
info breakpoints
delete 1
next c0.st 2
step 3
stepi
continue
