"""Build of the optional C accelerator; everything else is in pyproject.toml.

``otids.capture._fastpcap`` speeds up the pcap record loop (see its source). It is optional:
without a C compiler the build goes on and otids runs its pure-Python loop instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "otids.capture._fastpcap",
            sources=["otids/capture/_fastpcap.c"],
            optional=True,
        )
    ]
)
