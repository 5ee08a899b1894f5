"""Safe output: never over an input, never half-written, never a result mixed from two runs.

Every file is written under a temporary name in its target folder and renamed to its final name only
when complete (:func:`.atomic.atomic_path`, :func:`.atomic.atomic_paths` for the files of a step, which appear
together). A temporary name says which process wrote it (``.<name>.<host>-<pid>.<token>.tmp``): one
left by a killed process is removed the next time that output is written, and its name (hidden, ending
in ``.tmp``) is never that of a result. :func:`.paths.check_distinct` refuses, before any work, an output
that is an input or another output under any spelling.

``paths`` holds the checks of names and paths, ``atomic`` the temporary names and atomic writes, ``h5ad``
the writing of h5ad files.
"""
