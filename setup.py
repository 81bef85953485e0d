"""Build the C++ scheduler core as ``clara_rt._core`` (metadata lives in pyproject.toml)."""

from __future__ import annotations

from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

# Sorted so that the build is reproducible whatever order the file system lists them in.
SOURCES = sorted(glob("csrc/*.cpp"))

ext_modules = [
    Pybind11Extension(
        "clara_rt._core",
        SOURCES,
        cxx_std=17,
        include_dirs=["csrc"],
        extra_compile_args=["-O3"],
        define_macros=[("CLARA_RT_VERSION", '"0.1.0"')],
    ),
]

# Every package under clara_rt/, plus the top-level operators/ folder installed as
# clara_rt.operators (found, so that new subpackages cannot be left out of the wheel).
PACKAGES = [
    *find_packages(include=["clara_rt", "clara_rt.*"]),
    "clara_rt.operators",
    *(f"clara_rt.operators.{name}" for name in find_packages("operators")),
]

setup(
    packages=PACKAGES,
    package_dir={"clara_rt.operators": "operators"},
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
)
