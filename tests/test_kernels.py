"""Pinned kernels: the same numbers whatever SIMD, BLAS kernels and libm the CPU offers."""

import json
import os
import platform
import subprocess
import sys

import pytest

from sentiment_pipeline.core import kernels

from .conftest import FIXTURES

# What a CPU without AVX-512, AVX2 and FMA (a Sandy Bridge) gives NumPy, OpenBLAS and glibc.
OLDER_CPU = {"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4,-AVX512F",
             "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
             "OPENBLAS_CORETYPE": "Sandybridge"}

# TF-IDF and a Newton-CG logistic regression: NumPy's log, OpenBLAS's dot and gemv, libm's exp.
PROBE = """
import sys
from sentiment_pipeline.core import kernels
kernels.pin(restart=True)
import hashlib, json
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
frame = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False)
X = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2)).fit_transform(frame["text"])
model = LogisticRegression(solver="newton-cg", C=4.0, max_iter=1000).fit(X, frame["label"])
print(json.dumps({"features": hashlib.md5(X.data.tobytes()).hexdigest(),
                  "coef": hashlib.md5(model.coef_.tobytes()).hexdigest(), **kernels.describe()}))
"""


def probe(**env) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in {*OLDER_CPU, kernels.NATIVE_ENV, "NPY_ENABLE_CPU_FEATURES", "OPENBLAS_NUM_THREADS"}}
    result = subprocess.run([sys.executable, "-c", PROBE, str(FIXTURES / "airline_sample.csv")],
                            env={**clean, **env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_pinned_environment_extends_the_users_choices():
    env = kernels.pinned_environment({"NPY_DISABLE_CPU_FEATURES": "AVX512_ICL,X86_V4"}, "x86_64")
    assert env["NPY_DISABLE_CPU_FEATURES"].split()[:2] == ["AVX512_ICL", "X86_V4"]
    assert set(kernels.NUMPY_DISPATCH_TARGETS) <= set(env["NPY_DISABLE_CPU_FEATURES"].split())
    assert env["OPENBLAS_CORETYPE"] == "Nehalem" and env["OPENBLAS_NUM_THREADS"] == "1"
    assert kernels.pinned_environment({}, "aarch64")["OPENBLAS_CORETYPE"] == "ARMV8"
    assert "OPENBLAS_CORETYPE" not in kernels.pinned_environment({}, "riscv64")


def test_generic_libm_keeps_other_tunables_once():
    assert kernels.with_generic_libm("") == kernels.GLIBC_GENERIC_LIBM
    both = kernels.with_generic_libm("glibc.malloc.arena_max=2")
    assert both == "glibc.malloc.arena_max=2:" + kernels.GLIBC_GENERIC_LIBM
    assert kernels.with_generic_libm(both) == both


def test_too_late_or_opted_out_pins_nothing():
    environ = {}
    assert kernels.pin(environ) is False  # NumPy is loaded in this test process
    assert environ == {}
    assert kernels.is_native({kernels.NATIVE_ENV: "1"})


@pytest.mark.skipif(platform.machine().lower() not in {"x86_64", "amd64"}, reason="x86-64 kernels")
def test_pinned_kernels_give_the_same_bits_on_a_simulated_older_cpu():
    default, older = probe(), probe(**OLDER_CPU)
    assert default["numpy_simd"] == [] and default["blas_cores"] == ["Nehalem"]
    assert default["libm"] == "generic"
    assert (older["features"], older["coef"]) == (default["features"], default["coef"])


@pytest.mark.skipif(platform.machine().lower() not in {"x86_64", "amd64"}, reason="x86-64 kernels")
def test_the_simulation_changes_the_bits_of_native_kernels():
    """Without this, the test above could pass because the simulation did nothing."""
    native = probe(**{kernels.NATIVE_ENV: "1"})
    if not native["numpy_simd"]:
        pytest.skip("this CPU has nothing above NumPy's baseline to switch off")
    older = probe(**{kernels.NATIVE_ENV: "1"}, **OLDER_CPU)
    assert older["numpy_simd"] == [] and older["blas_cores"] == ["Sandybridge"]
    assert older["coef"] != native["coef"]
