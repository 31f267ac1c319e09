"""The CUDA kernel for block-FP8 on rows that are not 16-element aligned (compat/fp8/ragged.cu).

Triton could not reach copy bandwidth there (0.50 at best, docs/fp8.md: a row start anywhere inside a 16-byte
group costs it ~25 instructions per element), so this one kernel is CUDA: compiled at first use by NVRTC, the
runtime compiler that ships with every CUDA build of torch (the nvidia nvrtc wheel, or torch's own lib folder),
for the exact GPU at hand, and launched through the driver API on torch's current stream. Nothing is built at
install time and no compiler toolchain is needed. Where NVRTC is missing or cannot target the GPU,
`kernel_for()` returns None and the caller keeps the Triton kernel.

ctypes over NVRTC and the driver API, not a new dependency: the five calls used are stable C ABI since CUDA 11.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple

SOURCE = Path(__file__).with_name("ragged.cu")
THREADS = 256                 # NT in ragged.cu
BLOCK = (128, 128)            # BM x BN in ragged.cu: the only block size it serves
KINDS = {"bfloat16": 0, "float16": 1, "float32": 2}    # COMPAT_KIND in ragged.cu
KERNEL = "block_fp8_ragged"
# the build of ragged.cu that serves: groups staged in shared memory by cp.async (benchmarks/fp8_cuda_variants.py)
DEFINES: Tuple[str, ...] = ("-DCOMPAT_STAGE=1",)

_lock = threading.Lock()
_functions: Dict[Tuple[int, str], Optional[ctypes.c_void_p]] = {}
_cubins: Dict[Tuple[str, str], Optional[bytes]] = {}
_errors: Dict[str, str] = {}


class CompileError(RuntimeError):
    """NVRTC refused the source (its log is the message)."""


# ------------------------------------------------------------------------------------------------ NVRTC


def nvrtc_candidates() -> List[str]:
    """Where the NVRTC that matches torch's CUDA lives: the nvidia wheels (cu13 layout, then cuda_nvrtc), torch's
    lib folder, then the system loader path."""
    found: List[str] = []
    for base in sys.path:
        for pattern in ("nvidia/cu*/lib/libnvrtc.so.*", "nvidia/cuda_nvrtc/lib/libnvrtc.so.*", "torch/lib/libnvrtc*.so*"):
            found += sorted(p for p in glob.glob(os.path.join(base, pattern))
                            if "builtins" not in p and ".alt." not in p)
    found += ["libnvrtc.so"]
    return found


def _load_nvrtc() -> ctypes.CDLL:
    errors = []
    for path in nvrtc_candidates():
        try:
            # NVRTC dlopens its builtins library by soname; in a wheel it sits beside libnvrtc, off the loader
            # path, so load it first by full path (a loaded soname satisfies the later dlopen).
            for builtins in sorted(glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so.*"))):
                if ".alt." not in builtins:
                    ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(path)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    raise CompileError("no NVRTC library found: " + "; ".join(errors[-3:]))


def nvrtc_version(lib: Optional[ctypes.CDLL] = None) -> Tuple[int, int]:
    lib = lib or _load_nvrtc()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def compile_source(arch: str, dtype_name: str = "bfloat16", *, source: Optional[str] = None,
                   extra: Tuple[str, ...] = (), defines: Tuple[str, ...] = DEFINES) -> Tuple[bytes, str]:
    """(cubin, log) of the kernel for one input dtype and `arch` like "sm_90". Needs no GPU, only the NVRTC
    library (the tests compile it on CPU)."""
    lib = _load_nvrtc()
    src = (source if source is not None else SOURCE.read_text()).encode()
    prog = ctypes.c_void_p()
    _nvrtc_check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), src, b"ragged.cu", 0, None, None), "create")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17", f"-DCOMPAT_KIND={KINDS[dtype_name]}".encode(),
                *(o.encode() for o in defines + extra)]
        arr = (ctypes.c_char_p * len(opts))(*opts)
        res = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace")
        if res != 0:
            raise CompileError(f"NVRTC {nvrtc_version(lib)} could not compile ragged.cu for {arch}: {log.strip()}")
        lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        cubin = ctypes.create_string_buffer(size.value)
        _nvrtc_check(lib, lib.nvrtcGetCUBIN(prog, cubin), "get cubin")
        return cubin.raw, log
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _nvrtc_check(lib: ctypes.CDLL, res: int, what: str) -> None:
    if res != 0:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise CompileError(f"NVRTC {what}: {lib.nvrtcGetErrorString(res).decode()}")


# ------------------------------------------------------------------------------------------------ driver


def _driver() -> ctypes.CDLL:
    return ctypes.CDLL("libcuda.so.1")   # already loaded by torch once CUDA is initialised


def _cu_check(cu: ctypes.CDLL, res: int, what: str) -> None:
    if res != 0:
        msg = ctypes.c_char_p()
        cu.cuGetErrorString(res, ctypes.byref(msg))
        raise RuntimeError(f"CUDA driver {what}: error {res} ({(msg.value or b'?').decode()})")


class _Context:
    """The device's primary context (the one torch uses) made current for the duration of a driver call."""

    def __init__(self, cu: ctypes.CDLL, ordinal: int):
        self.cu = cu
        dev = ctypes.c_int()
        _cu_check(cu, cu.cuInit(0), "cuInit")
        _cu_check(cu, cu.cuDeviceGet(ctypes.byref(dev), ordinal), "cuDeviceGet")
        self.ctx = ctypes.c_void_p()
        _cu_check(cu, cu.cuDevicePrimaryCtxRetain(ctypes.byref(self.ctx), dev), "cuDevicePrimaryCtxRetain")

    def __enter__(self) -> _Context:
        _cu_check(self.cu, self.cu.cuCtxPushCurrent_v2(self.ctx), "cuCtxPushCurrent")
        return self

    def __exit__(self, *exc: object) -> None:
        popped = ctypes.c_void_p()
        self.cu.cuCtxPopCurrent_v2(ctypes.byref(popped))


_contexts: Dict[int, _Context] = {}


def _cubin_for(arch: str, dtype_name: str) -> Optional[bytes]:
    key = (arch, dtype_name)
    if key not in _cubins:
        try:
            _cubins[key] = compile_source(arch, dtype_name)[0]
        except (CompileError, OSError, AttributeError) as exc:   # AttributeError: an NVRTC without GetCUBIN
            _cubins[key], _errors[arch] = None, str(exc)
    return _cubins[key]


def kernel_for(device_index: int, dtype_name: str, capability: Tuple[int, int]) -> Optional[ctypes.c_void_p]:
    """The loaded kernel for this device and input dtype, or None where NVRTC cannot build it (see `last_error`)."""
    key = (device_index, dtype_name)
    with _lock:
        if key not in _functions:
            arch = f"sm_{capability[0]}{capability[1]}"
            cubin = _cubin_for(arch, dtype_name)
            fn: Optional[ctypes.c_void_p] = None
            if cubin is not None:
                fn = load(device_index, cubin)
            _functions[key] = fn
        return _functions[key]


def load(device_index: int, cubin: bytes) -> ctypes.c_void_p:
    """The kernel of `cubin`, loaded into the device's primary context (torch's)."""
    cu = _driver()
    ctx = _contexts.get(device_index) or _Context(cu, device_index)
    _contexts[device_index] = ctx
    with ctx:
        mod, fn = ctypes.c_void_p(), ctypes.c_void_p()
        _cu_check(cu, cu.cuModuleLoadData(ctypes.byref(mod), cubin), "cuModuleLoadData")
        _cu_check(cu, cu.cuModuleGetFunction(ctypes.byref(fn), mod, KERNEL.encode()), "cuModuleGetFunction")
    return fn


def last_error() -> str:
    """Why the CUDA kernel is not used, where it is not ("" when it is or was never asked for)."""
    return "; ".join(f"{arch}: {msg}" for arch, msg in _errors.items())


def launch(fn: ctypes.c_void_p, device_index: int, stream: int, x_ptr: int, q_ptr: int, s_ptr: int, pub_ptr: int,
           m: int, k: int) -> None:
    """One CTA per 128 x 128 block on `stream` (torch's current stream of that device). `pub_ptr`: nbm * nbk
    zeroed int64 words on the device, where each CTA publishes its block's amax for its neighbours."""
    nbm, nbk = -(-m // BLOCK[0]), -(-k // BLOCK[1])
    args = [ctypes.c_void_p(x_ptr), ctypes.c_void_p(q_ptr), ctypes.c_void_p(s_ptr), ctypes.c_void_p(pub_ptr),
            ctypes.c_int(m), ctypes.c_int(k), ctypes.c_int(nbm), ctypes.c_int(nbk)]
    params = (ctypes.c_void_p * len(args))(*(ctypes.cast(ctypes.byref(a), ctypes.c_void_p) for a in args))
    cu = _driver()
    with _contexts[device_index]:
        _cu_check(cu, cu.cuLaunchKernel(fn, nbm * nbk, 1, 1, THREADS, 1, 1, 0, ctypes.c_void_p(stream), params,
                                        None), "cuLaunchKernel")
