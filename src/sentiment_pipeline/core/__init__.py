"""The small core every part stands on: typed params (config), errors, atomic files, paths,
pinned numeric kernels and the opt-in stage profiler."""
