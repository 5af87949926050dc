"""The base layer every other package builds on: errors, ids, paths, atomic files and locks,
the mount wrapper, the version, and the size/duration humanizer.

It imports nothing of pydock (tests/test_layers.py keeps it so), like Docker 0.7's `utils/`.
"""
