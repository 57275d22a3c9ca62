# program: pipeline.s
# inputs: pipeline.npz
# Reverse execution: reverse-continue lands where the forward run stopped (same digest).
break body c0.vec
continue
digest
continue
digest
continue
reverse-continue
digest
reverse-continue
digest
reverse-continue
reverse-step
stepi
goto 100
digest
goto 40
digest
goto 100
digest
