"""Numpy references of the SmolLM2 and MiniLM forward passes: the test oracle.

Written from the model definitions, independent of knpu's kernels, and checked against
llama.cpp and sentence-transformers through the fixtures in ``tests/fixtures``. The device
model runners are checked against these layer by layer. Nothing here is fast; it is meant
to be obviously right.
"""
