"""CPU-independent numerics: pin NumPy's SIMD dispatch and OpenBLAS's kernels before they load.

NumPy picks SIMD code for ``log``, ``exp`` and friends by CPU (AVX2, AVX-512, ...), and OpenBLAS
picks its dot-product and matrix kernels by CPU; each choice sums or rounds in its own order, so
the last bits of TF-IDF values and of fitted coefficients differ between CPU models, and those
bits grow into different CV scores, probabilities and plots. Every pipeline process therefore
runs the kernels every CPU of its architecture has (NumPy's baseline, OpenBLAS's oldest
supported core) with one BLAS thread, so the files reviewers read are the same on a laptop, an
AVX-512 server and any GitHub runner. The cost is measured in docs/determinism.md.

NumPy's baseline code calls the C library's ``log`` and ``exp``, and glibc picks those by CPU
too (an FMA-contracted build where the CPU has FMA, which rounds differently), so on x86-64 the
process also asks glibc for its generic build. glibc reads that choice (``GLIBC_TUNABLES``) only
when a program starts, so :func:`pin` restarts the process once, before anything heavy is
imported. NumPy and OpenBLAS read theirs when they are loaded, so :func:`pin` must run before
anything imports NumPy; the command line's ``main`` calls it first thing. Set
``SENTIMENT_PIPELINE_NATIVE_KERNELS=1`` to use the CPU's own kernels (faster on big data; the
results then match only machines of the same CPU family).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import MutableMapping

NATIVE_ENV = "SENTIMENT_PIPELINE_NATIVE_KERNELS"

# Every SIMD target NumPy 2.x dispatches to above its baseline, on x86-64 and on arm64. Each
# must be named: disabling X86_V3 leaves X86_V4 on. Names the running NumPy does not know
# (the other architecture's) only raise a silent ImportWarning.
NUMPY_DISPATCH_TARGETS = ("X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR",
                          "ASIMDHP", "ASIMDDP", "ASIMDFHM", "SVE")
# The oldest core OpenBLAS's runtime-dispatch builds carry per architecture: every CPU that can
# run NumPy's wheels (x86-64-v2 or later, ARMv8) runs these kernels.
OPENBLAS_CORES = {"x86_64": "Nehalem", "amd64": "Nehalem", "aarch64": "ARMV8", "arm64": "ARMV8"}
# glibc's x86-64 libm selects its FMA (or AMD's FMA4) builds of exp, log, pow, sin, ... when the
# CPU has them; masking both selects the generic build every x86-64 CPU runs.
GLIBC_GENERIC_LIBM = "glibc.cpu.hwcaps=-FMA,-FMA4"


def is_native(environ: MutableMapping[str, str] = os.environ) -> bool:
    return environ.get(NATIVE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pinned_environment(environ: MutableMapping[str, str], machine: str) -> dict[str, str]:
    """The variables to set so NumPy and OpenBLAS run their architecture's common kernels.

    A disable list the user gave is kept and extended; ``NPY_ENABLE_CPU_FEATURES`` goes,
    since NumPy refuses to start with both."""
    given = environ.get("NPY_DISABLE_CPU_FEATURES", "").replace(",", " ").split()
    disabled = given + [name for name in NUMPY_DISPATCH_TARGETS if name not in given]
    pinned = {"NPY_DISABLE_CPU_FEATURES": " ".join(disabled), "OPENBLAS_NUM_THREADS": "1"}
    core = OPENBLAS_CORES.get(machine.lower())
    if core:
        pinned["OPENBLAS_CORETYPE"] = core
    return pinned


def with_generic_libm(tunables: str) -> str:
    """``GLIBC_TUNABLES`` with the generic libm selected, other tunables kept."""
    if GLIBC_GENERIC_LIBM in tunables.split(":"):
        return tunables
    return ":".join(filter(None, [tunables, GLIBC_GENERIC_LIBM]))


def _glibc_x86_64() -> bool:
    return platform.machine().lower() in {"x86_64", "amd64"} and platform.libc_ver()[0] == "glibc"


def pin(environ: MutableMapping[str, str] = os.environ, restart: bool = False) -> bool:
    """Pin the kernels for this process and its children; False when it is too late (NumPy is
    already loaded) or the user asked for native kernels.

    With ``restart``, a process whose C library was started with its CPU-specific maths is
    replaced (``exec``, same arguments) by one started with the generic maths; only a program's
    entry point may ask for that."""
    if is_native(environ) or "numpy" in sys.modules:
        return False
    environ.pop("NPY_ENABLE_CPU_FEATURES", None)
    environ.update(pinned_environment(environ, platform.machine()))
    if _glibc_x86_64():
        tunables = environ.get("GLIBC_TUNABLES", "")
        if with_generic_libm(tunables) != tunables:
            environ["GLIBC_TUNABLES"] = with_generic_libm(tunables)
            if restart:
                sys.stdout.flush()
                sys.stderr.flush()
                os.execv(sys.executable, sys.orig_argv)
    return True


def describe() -> dict[str, object]:
    """What this process runs: for the model card and for checking the pin took effect."""
    # numpy ships no stub for this private C extension module
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__  # type: ignore[import-not-found]
    from threadpoolctl import threadpool_info

    libm = "generic" if GLIBC_GENERIC_LIBM in os.environ.get("GLIBC_TUNABLES", "").split(":") else "cpu"
    return {
        "machine": platform.machine(),
        "numpy_simd": [name for name in __cpu_dispatch__ if __cpu_features__.get(name)],
        "blas_cores": sorted({str(info.get("architecture")) for info in threadpool_info()
                              if info.get("user_api") == "blas"}),
        "libm": libm if _glibc_x86_64() else platform.libc_ver()[0] or "unknown",
    }
