"""rkt: stage1 as rkt's stage1: the image rkt takes (aci.py; bundle.py and
launch.c make it self-contained) and the flags and argument forms of rkt's
stage1 interface (interface.py).

May import: engine, pod, isolation, live, runner.
"""
