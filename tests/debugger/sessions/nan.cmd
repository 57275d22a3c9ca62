# program: pipeline.s
# inputs: pipeline.npz
# A NaN/Inf watchpoint on tensor Z, which log(x) fills for x <= 0.
watch -nan Z
continue
print Z
print isnan(Z[0,0]) && Z[0,6] == 0
print Z[0,5]
continue
