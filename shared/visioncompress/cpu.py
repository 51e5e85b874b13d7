"""What this node's CPU can do: the instruction-set features that decide which INT8/BF16 forms are fast.

Read from ``/proc/cpuinfo`` (Linux x86 ``flags``, ARM ``Features``); ``platform.machine()`` gives the
architecture. Nothing here imports a runtime.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuFeatures:
    machine: str  # x86_64, aarch64, ...
    flags: frozenset[str]
    model: str = ""

    @property
    def x86(self) -> bool:
        return self.machine.lower() in {"x86_64", "amd64", "i686", "i386"}

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags and "avx512bw" in self.flags

    @property
    def vnni(self) -> bool:
        """An 8-bit dot product instruction (AVX-512 VNNI or AVX-VNNI): u8 x s8 -> s32 without saturation."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni"})

    @property
    def amx_int8(self) -> bool:
        return "amx_int8" in self.flags

    @property
    def bf16(self) -> bool:
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    @property
    def arm_dot(self) -> bool:
        """ARM's signed/unsigned 8-bit dot product (asimddp) or i8mm."""
        return bool(self.flags & {"asimddp", "i8mm"})

    def summary(self) -> str:
        names = [n for n, on in (("AVX2", self.avx2), ("AVX-512", self.avx512), ("VNNI", self.vnni),
                                 ("AMX-INT8", self.amx_int8), ("BF16", self.bf16), ("ARM dot", self.arm_dot)) if on]
        return f"{self.machine} ({', '.join(names) or 'no SIMD extensions used by the INT8 kernels'})"


def cpu_features(cpuinfo: str | Path = CPUINFO, machine: str | None = None) -> CpuFeatures:
    """This node's features (an empty flag set where /proc/cpuinfo cannot be read)."""
    flags: set[str] = set()
    model = ""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in {"flags", "features"} and not flags:
            flags = set(value.split())
        elif key == "model name" and not model:
            model = value.strip()
    return CpuFeatures(machine or platform.machine(), frozenset(flags), model)
