"""Layer tars: compression sniffing, streaming tar writer, safe layer apply, diffs and commits.

compression: in-process gzip/bzip2/xz by magic bytes.  tar: write_tar (numeric owners, hard
links, devices, xattrs, ns mtimes, synthetic whiteouts).  apply: apply_layer (entry-by-entry,
symlinks resolved inside the rootfs, whiteouts).  changes: docker diff from lstat metadata.
export: change list -> layer tar.  Nothing is imported here, so `import pydock.archive` is free.
"""
