# program: pipeline.s
# inputs: pipeline.npz
# Mistakes are reported and the session goes on.
frobnicate
print cycle >=
print nosuch + 1
break nolabel
break body+99
break body c7.mac
break body if ar1 ==
watch nosuch
watch -sideways Y
info bogus
x/4q dram[0]
x/4f sp[0xfffffff0]
until -5
step abc
next
next c9.mac
why
delete 99
re
break body c0.st if cycle > 50
continue
print ar1
goto 99999999
