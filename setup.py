"""Build the C++ scheduler core as ``clara_rt._core`` (metadata lives in pyproject.toml)."""

from __future__ import annotations

from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

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

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
