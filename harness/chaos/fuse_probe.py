"""Whether this host can mount the io family's FUSE file system: the device, the kernel's fuse,
libfuse3 and mfusepy, found by opening and looking them up (``harness doctor``, the io preflight)."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
from pathlib import Path

__all__ = ["found", "problem"]


def problem() -> str:
    """What is missing for an io fault here, with how to get it; '' when nothing is."""
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        return f"cannot open /dev/fuse: {exc.strerror or exc} (modprobe fuse; run as root)"
    if "fuse" not in Path("/proc/filesystems").read_text().split():
        return "the kernel does not list fuse in /proc/filesystems (modprobe fuse)"
    if ctypes.util.find_library("fuse3") is None:
        return "/dev/fuse and the kernel's fuse are there, but not libfuse3 (apt-get install fuse3 libfuse3-3)"
    if importlib.util.find_spec("mfusepy") is None:
        return "/dev/fuse and libfuse3 are there, but not the mfusepy package (pip install mfusepy)"
    return ""


def found() -> str:
    """What the probe found, for ``harness doctor``."""
    return f"/dev/fuse, the kernel's fuse and {ctypes.util.find_library('fuse3')} (io faults)"
