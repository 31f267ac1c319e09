#!/usr/bin/env python3
"""Harvest what an installed vLLM release itself holds into compat/data/harvested/vllm-X.Y.Z.toml.

Runs inside a real vLLM release env, no GPU needed (format: docs/harvest.md):

    python tools/harvest.py                     # writes compat/data/harvested/vllm-<installed>.toml
    python tools/harvest.py --out DIR           # writes DIR/vllm-<installed>.toml
    python tools/harvest.py --stdout            # prints the TOML

Facts that need no import (dist metadata, ELF fatbins) are always written; the ones that need `import vllm`
(model registry, quantization methods, attention backends) are written when the import works, otherwise
`[release] import_error` says why. Every failing probe is recorded as text, never raised: one missing module in
an old release must not cost the rest of its facts.

Stdlib plus what a vLLM env always has (packaging, torch); Python 3.8+. `tools/harvest_walk.py` (tox -e harvest)
runs this once per release in throwaway envs.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import io
import json
import mmap
import os
import pkgutil
import platform
import re
import struct
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "compat" / "data" / "harvested"
SCHEMA = 1

# Kernel packages compat cares about: key -> distribution names that provide it (PEP 503 normalised).
KERNELS: Dict[str, Tuple[str, ...]] = {
    "flashinfer": ("flashinfer-python", "flashinfer"),
    "xformers": ("xformers",),
    "flash_attn": ("flash-attn", "vllm-flash-attn"),
}
# Compute capabilities probed on backends that answer supports_compute_capability() instead of a number.
PROBE_CAPS = ((7, 0), (7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (10, 3), (12, 0), (12, 1))
# Head sizes probed on backends that answer supports_head_size() instead of a list.
PROBE_HEADS = (32, 40, 48, 56, 64, 72, 80, 96, 112, 120, 128, 160, 192, 224, 256, 512)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _clean(text: str, limit: int = 300) -> str:
    """One line, env paths replaced, so two envs of one release write the same file."""
    text = " ".join(str(text).split())
    for prefix in sorted({sys.prefix, sys.base_prefix, str(ROOT), os.path.expanduser("~")}, key=len, reverse=True):
        if prefix and len(prefix) > 1:
            text = text.replace(prefix, "<env>" if prefix in (sys.prefix, sys.base_prefix) else "<root>")
    text = re.sub(r"0x[0-9a-f]{6,}", "0x..", text)
    return text[:limit]


def _err(exc: BaseException) -> str:
    return _clean(f"{type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------------------------- dist metadata
def _requirements(dist: str = "vllm") -> List[Any]:
    from packaging.requirements import Requirement

    out = []
    for line in md.requires(dist) or []:
        try:
            out.append(Requirement(line))
        except Exception:  # noqa: BLE001 - an unparsable line is skipped, not fatal
            continue
    return out


def _linux_env(extra: str = "") -> Dict[str, str]:
    """Marker environment of the default platform the tables speak for: Linux x86_64, this Python."""
    return {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
            "platform_python_implementation": "CPython", "implementation_name": "cpython",
            "python_version": "%d.%d" % sys.version_info[:2], "python_full_version": platform.python_version(),
            "extra": extra}


def _marker_true(req: Any, extra: str = "") -> bool:
    return req.marker is None or bool(req.marker.evaluate(_linux_env(extra)))


def _extras_of(req: Any) -> List[str]:
    """The extras a requirement's marker is gated on (extra == "x")."""
    if req.marker is None:
        return []
    return sorted(set(re.findall(r"""extra\s*==\s*['"]([^'"]+)['"]""", str(req.marker))))


def _installed(dist: str) -> Optional[str]:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _base_version(v: Optional[str]) -> str:
    return (v or "").split("+")[0]


def _default_requirement(reqs: Sequence[Any], dist: str) -> str:
    """Specifier of `dist` as a plain install on Linux x86_64 sees it ('' when not declared)."""
    for req in reqs:
        if _norm(req.name) == _norm(dist) and not _extras_of(req) and _marker_true(req):
            return str(req.specifier)
    return ""


def vllm_root() -> Optional[Path]:
    try:
        files = md.files("vllm") or []
    except md.PackageNotFoundError:
        return None
    for f in files:
        if str(f).replace("\\", "/") == "vllm/__init__.py":
            return Path(str(f.locate())).parent
    return None


def harvest_release() -> Dict[str, Any]:
    reqs = _requirements()
    torch_v = _installed("torch")
    out: Dict[str, Any] = {
        "vllm": md.version("vllm"),
        "harvested_with": "tools/harvest.py",
        "schema": SCHEMA,
        "python": platform.python_version(),
        "torch": _base_version(torch_v),
        "torch_cuda": _torch_cuda(),
        "torch_requirement": _default_requirement(reqs, "torch"),
        "transformers_requirement": _default_requirement(reqs, "transformers"),
        "transformers": _installed("transformers") or "",
        "triton": _base_version(_installed("triton")),
    }
    return out


def _torch_cuda() -> str:
    """torch.version.cuda read from torch/version.py without importing torch."""
    try:
        for f in md.files("torch") or []:
            if str(f).replace("\\", "/") == "torch/version.py":
                m = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]*)['\"]", Path(str(f.locate())).read_text(), re.M)
                return m.group(1) if m else ""
    except md.PackageNotFoundError:
        pass
    return ""


def harvest_kernels() -> Dict[str, Dict[str, Any]]:
    reqs = _requirements()
    root = vllm_root()
    out: Dict[str, Dict[str, Any]] = {}
    for key, dists in KERNELS.items():
        entry: Dict[str, Any] = {}
        matches = [r for r in reqs if _norm(r.name) in {_norm(d) for d in dists}]
        required = [r for r in matches if not _extras_of(r) and _marker_true(r)]
        extras = [r for r in matches if _extras_of(r)]
        if required:
            r = required[0]
            entry = {"declared": "required", "requirement": _clean(str(r).split(";")[0].strip())}
            if r.marker is not None:
                entry["marker"] = str(r.marker)
        elif extras:
            r = extras[0]
            entry = {"declared": "extra", "extra": ",".join(_extras_of(r)),
                     "requirement": _clean(str(r).split(";")[0].strip())}
        elif key == "flash_attn" and root is not None and (root / "vllm_flash_attn").is_dir():
            sos = sorted(p.name for p in (root / "vllm_flash_attn").glob("*.so"))
            entry = {"declared": "bundled", "note": "vllm.vllm_flash_attn shipped inside the wheel (" +
                     (", ".join(sos) or "no .so") + ")"}
        else:
            entry = {"declared": "absent"}
            other = [r for r in matches if not _marker_true(r)]
            if other:
                entry["note"] = "declared only for other platforms: " + "; ".join(str(r) for r in other)
        if key == "flash_attn" and entry["declared"] != "bundled" and root is not None \
                and (root / "vllm_flash_attn").is_dir():
            entry["bundled_too"] = True
        installed = next((v for v in (_installed(d) for d in dists) if v), None)
        entry["installed"] = installed or ""
        out[key] = entry
    return out


# ----------------------------------------------------------------------------------------------- ELF fatbins
FATBIN_MAGIC = 0xBA55ED50


def _elf_section(data: Any, name: bytes) -> Optional[Tuple[int, int]]:
    """(offset, size) of an ELF64 little-endian section by name, parsed from the section headers."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    e_shoff, = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if e_shoff == 0 or e_shnum == 0:
        return None

    def sh(i: int) -> Tuple[int, int, int]:
        base = e_shoff + i * e_shentsize
        sh_name, = struct.unpack_from("<I", data, base)
        sh_offset, sh_size = struct.unpack_from("<QQ", data, base + 0x18)
        return sh_name, sh_offset, sh_size

    _, str_off, str_size = sh(e_shstrndx)
    for i in range(e_shnum):
        n, off, size = sh(i)
        end = data.find(b"\0", str_off + n, str_off + str_size)
        if data[str_off + n:end] == name:
            return off, size
    return None


def fatbin_archs(path: Path) -> Dict[str, Any]:
    """SASS ('sm_NN', 'sm_NNa') and PTX ('compute_NN') archs in a shared library's .nv_fatbin section, with the
    number of fatbins (one per compiled translation unit) carrying each, and the fatbin count.

    Layout (NVIDIA's fatbinary container; read without cuobjdump): the section holds concatenated fatbins, each a
    16-byte header (u32 magic 0xBA55ED50, u16 version, u16 header size, u64 payload size) followed by entries,
    each starting with u16 kind (1 = PTX, 2 = ELF/SASS), u16 version, u32 entry header size, u64 payload size,
    u32 compressed size, u32 ?, u16 minor, u16 major, u32 arch (e.g. 90 for sm_90), u32 name offset, u32 name
    length, u64 flags (bit 20 set on arch-specific 'a' targets: sm_90a, sm_100a); the next entry starts at entry
    start + header size + payload size.
    """
    sass: Dict[str, int] = {}
    ptx: Dict[str, int] = {}
    count = 0
    with open(path, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            return {"sass": sass, "ptx": ptx, "fatbins": 0}
        try:
            sec = _elf_section(data, b".nv_fatbin")
            if sec is None:
                return {"sass": sass, "ptx": ptx, "fatbins": 0}
            start, size = sec
            end = start + size
            pos = start
            magic = struct.pack("<I", FATBIN_MAGIC)
            while pos < end:
                pos = data.find(magic, pos, end)
                if pos < 0:
                    break
                count += 1
                _m, _ver, hsize, fsize = struct.unpack_from("<IHHQ", data, pos)
                entry, stop = pos + hsize, min(pos + hsize + fsize, end)
                seen = set()
                while entry + 48 <= stop:
                    kind, _ev, ehsize, esize = struct.unpack_from("<HHIQ", data, entry)
                    arch, = struct.unpack_from("<I", data, entry + 28)
                    flags, = struct.unpack_from("<Q", data, entry + 40)
                    if ehsize == 0 or kind not in (1, 2):
                        break
                    name = ("compute_%d" if kind == 1 else "sm_%d") % arch + ("a" if flags & (1 << 20) else "")
                    if name not in seen:
                        seen.add(name)
                        table = ptx if kind == 1 else sass
                        table[name] = table.get(name, 0) + 1
                    entry += ehsize + esize
                pos = max(stop, pos + 4)
        finally:
            data.close()
    return {"sass": sass, "ptx": ptx, "fatbins": count}


def _arch_key(name: str) -> Tuple[int, str]:
    num = name.split("_", 1)[1]
    return int(num.rstrip("af")), num


def _union(lists: Iterable[Iterable[str]]) -> List[str]:
    return sorted({a for lst in lists for a in lst}, key=_arch_key)


def _dist_sos(dist: str, under: str) -> List[Path]:
    try:
        files = md.files(dist) or []
    except md.PackageNotFoundError:
        return []
    out = []
    for f in files:
        rel = str(f).replace("\\", "/")
        if rel.startswith(under) and (rel.endswith(".so") or ".so." in rel):
            p = Path(str(f.locate()))
            if p.is_file():
                out.append(p)
    return sorted(out)


def harvest_arch() -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    vllm_files: Dict[str, List[str]] = {}
    vllm_ptx: List[List[str]] = []
    root = vllm_root()
    for so in _dist_sos("vllm", "vllm/"):
        got = fatbin_archs(so)
        if got["sass"] or got["ptx"]:
            rel = str(so.relative_to(root.parent)) if root else so.name
            vllm_files[rel] = _union([got["sass"]]) + _union([got["ptx"]])
            vllm_ptx.append(list(got["ptx"]))
    c_libs = [[a for a in v if a.startswith("sm_")] for k, v in vllm_files.items()
              if re.match(r"vllm/_C(_\w+)?\.", k)]  # _C.abi3.so; _C_stable_libtorch.abi3.so from ~0.2x
    out["vllm_C"] = _union(c_libs)
    out["vllm_all"] = _union([a for a in v if a.startswith("sm_")] for v in vllm_files.values())
    out["vllm_ptx"] = _union(vllm_ptx)
    torch_libs = [p for p in _dist_sos("torch", "torch/lib/") if p.name.startswith("libtorch_cuda")]
    main: Dict[str, Any] = {}
    torch_sass, torch_ptx = [], []
    for so in torch_libs:
        got = fatbin_archs(so)
        torch_sass.append(list(got["sass"]))
        torch_ptx.append(list(got["ptx"]))
        if so.name == "libtorch_cuda.so":
            main = got
    # The arch list torch was built for: carried by at least half of libtorch_cuda.so's fatbins (a few kernels
    # add their own targets, e.g. one sm_89 fp8 kernel or sm_90a ones, which say nothing about the build's list).
    n = main.get("fatbins", 0)
    out["torch_cuda"] = _union([[a for a, c in main.get("sass", {}).items() if n and c * 2 >= n]])
    out["torch_cuda_any"] = _union(torch_sass)
    out["torch_cuda_ptx"] = _union(torch_ptx)
    out["torch_cuda_files"] = sorted(p.name for p in torch_libs)
    out["files"] = {k: vllm_files[k] for k in sorted(vllm_files)}
    return out


# ----------------------------------------------------------------------------------------------- import vllm
def _dtype_names(dtypes: Iterable[Any]) -> List[str]:
    return sorted({str(d).replace("torch.", "") for d in dtypes})


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def harvest_models() -> Dict[str, Any]:
    from vllm.model_executor.models import ModelRegistry  # type: ignore[import-not-found]

    archs = ModelRegistry.get_supported_archs()
    return {"architectures": sorted(set(archs))}


def _quant_classes() -> Dict[str, Any]:
    """Quantization method -> config class, from QUANTIZATION_METHODS (a dict before ~0.6.4, then a list of
    names resolved by get_quantization_config)."""
    q = importlib.import_module("vllm.model_executor.layers.quantization")
    methods = q.QUANTIZATION_METHODS
    out: Dict[str, Any] = {}
    if isinstance(methods, dict):
        return dict(methods)
    for name in methods:
        try:
            out[name] = q.get_quantization_config(name)
        except Exception as exc:  # noqa: BLE001
            out[name] = exc
    return out


def harvest_quantization() -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for name, cls in sorted(_quant_classes().items()):
        entry: Dict[str, Any] = {}
        if isinstance(cls, BaseException):
            entry["error"] = _err(cls)
            out[name] = entry
            continue
        entry["config_class"] = f"{cls.__module__}:{cls.__qualname__}"
        try:
            entry["min_capability"] = int(cls.get_min_capability())
        except Exception as exc:  # noqa: BLE001
            entry["min_capability_error"] = _err(exc)
        try:
            fn = cls.get_supported_act_dtypes
            try:
                dtypes = fn()
            except TypeError:  # declared as an instance method; implementations do not read self
                dtypes = fn(None)
            entry["act_dtypes"] = _dtype_names(dtypes)
        except Exception as exc:  # noqa: BLE001
            entry["act_dtypes_error"] = _err(exc)
        out[name] = entry
    return out


def _backend_enum() -> Tuple[str, Any]:
    """(module path, enum) of the release's attention backend enum, newest location first."""
    for mod, attr in (("vllm.v1.attention.backends.registry", "AttentionBackendEnum"),
                      ("vllm.attention.backends.registry", "AttentionBackendEnum"),
                      ("vllm.attention.backends.registry", "_Backend"),
                      ("vllm.platforms.interface", "_Backend"),
                      ("vllm.attention.selector", "_Backend")):
        try:
            enum = getattr(importlib.import_module(mod), attr)
        except Exception:  # noqa: BLE001
            continue
        return f"{mod}:{attr}", enum
    raise LookupError("no attention backend enum found (looked in registry, platforms.interface, selector)")


def _class_path_from_registry(member: Any) -> Optional[str]:
    """'module.Class' the release's own registry maps a backend to (0.11+), else None."""
    for meth in ("get_path",):
        fn = getattr(member, meth, None)
        if callable(fn):
            try:
                path = fn()
                if isinstance(path, str) and path:
                    return path
            except Exception:  # noqa: BLE001
                pass
    for mod in ("vllm.v1.attention.backends.registry", "vllm.attention.backends.registry"):
        try:
            m = importlib.import_module(mod)
        except Exception:  # noqa: BLE001
            continue
        fn = getattr(m, "backend_to_class_str", None)
        if callable(fn):
            try:
                return str(fn(member))
            except Exception:  # noqa: BLE001
                pass
        table = getattr(m, "BACKEND_MAP", None)
        if isinstance(table, dict) and member in table:
            return str(table[member])
    return None


def _scan_backend_modules() -> Tuple[Dict[str, List[str]], Dict[str, str]]:
    """Older releases have no name -> class registry: import every module under the attention backend packages
    and map each AttentionBackend subclass's get_name() to 'module.Class'. Returns (name -> paths, module -> error)."""
    found: Dict[str, List[str]] = {}
    errors: Dict[str, str] = {}
    for pkg_name in ("vllm.attention.backends", "vllm.v1.attention.backends"):
        try:
            pkg = importlib.import_module(pkg_name)
        except Exception as exc:  # noqa: BLE001
            errors[pkg_name] = _err(exc)
            continue
        for info in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
            try:
                mod = importlib.import_module(info.name)
            except BaseException as exc:  # noqa: BLE001 - some raise SystemExit-like errors on import
                errors[info.name] = _err(exc)
                continue
            for obj in list(vars(mod).values()):
                if not isinstance(obj, type) or obj.__module__ != mod.__name__:
                    continue
                get_name = obj.__dict__.get("get_name")
                if get_name is None:
                    continue
                try:
                    name = obj.get_name()
                except Exception:  # noqa: BLE001
                    continue
                if isinstance(name, str) and name:
                    found.setdefault(name, []).append(f"{mod.__name__}.{obj.__qualname__}")
    return found, errors


def _selector_map() -> Dict[str, str]:
    """Backend name -> 'module.Class' read from the release's selector source (releases before the registry):
    `if backend == _Backend.NAME: from vllm.attention.backends.x import Cls` in attention/selector.py and in
    platforms/*.py (0.5.x-0.10.x), and `return "vllm....Cls"` strings guarded by `_Backend.NAME` comparisons."""
    import ast

    root = vllm_root()
    if root is None:
        return {}
    files = [root / "attention" / "selector.py", *sorted((root / "platforms").glob("*.py"))]
    out: Dict[str, str] = {}
    path_re = re.compile(r"^vllm\.[\w.]*attention\.backends\.[\w.]+\.\w+Backend$")
    for f in files:
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            continue
        # 0.8-0.10 platforms/cuda.py: FLASHMLA_V1 = "vllm.v1....FlashMLABackend" ... if ...: return FLASHMLA_V1
        consts = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                  and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                  and path_re.match(n.value.value) for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.If):
                continue
            names = [n.attr for n in ast.walk(node.test) if isinstance(n, ast.Attribute)
                     and isinstance(n.value, ast.Name) and n.value.id in ("_Backend", "AttentionBackendEnum")]
            if len(names) != 1:
                continue
            for stmt in node.body:
                for sub in ast.walk(stmt):
                    if isinstance(sub, ast.ImportFrom) and sub.module and "attention.backends" in sub.module:
                        cls = next((a.name for a in sub.names if a.name.endswith("Backend")), None)
                        if cls:
                            out.setdefault(names[0], f"{sub.module}.{cls}")
                    elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and path_re.match(sub.value):
                        out.setdefault(names[0], sub.value)
                    elif isinstance(sub, ast.Return) and isinstance(sub.value, ast.Name) and sub.value.id in consts:
                        out.setdefault(names[0], consts[sub.value.id])
    return out


def _load_class(path: str) -> Any:
    mod, _, cls = path.rpartition(".")
    return getattr(importlib.import_module(mod), cls)


def _device_capability(major: int, minor: int) -> Any:
    try:
        from vllm.platforms.interface import DeviceCapability  # type: ignore[import-not-found]

        return DeviceCapability(major, minor)
    except Exception:  # noqa: BLE001
        return None


def _constraints(cls: Any) -> Dict[str, Any]:
    """What the backend class itself answers about head sizes, dtypes, capability, MLA, sliding window."""
    out: Dict[str, Any] = {}
    try:
        heads = cls.get_supported_head_sizes()
        if heads:
            out["head_sizes"] = sorted(int(h) for h in heads)
    except Exception:  # noqa: BLE001
        pass
    if "head_sizes" not in out and callable(getattr(cls, "supports_head_size", None)):
        try:
            ok = [h for h in PROBE_HEADS if cls.supports_head_size(h)]
            out["head_sizes"] = ok
            out["head_sizes_probed"] = True
        except Exception:  # noqa: BLE001
            pass
    dtypes = getattr(cls, "supported_dtypes", None)
    if callable(dtypes):
        try:
            dtypes = dtypes()
        except Exception:  # noqa: BLE001
            dtypes = None
    if dtypes is None and callable(getattr(cls, "get_supported_dtypes", None)):
        try:
            dtypes = cls.get_supported_dtypes()
        except Exception:  # noqa: BLE001
            dtypes = None
    if isinstance(dtypes, (list, tuple, set, frozenset)) and dtypes:
        out["dtypes"] = _dtype_names(dtypes)
    if callable(getattr(cls, "supports_compute_capability", None)):
        ok = []
        for major, minor in PROBE_CAPS:
            cap = _device_capability(major, minor)
            if cap is None:
                break
            try:
                if cls.supports_compute_capability(cap):
                    ok.append(major * 10 + minor)
            except Exception:  # noqa: BLE001
                ok = []
                break
        if ok:
            out["min_capability"] = min(ok)
            out["capabilities"] = ok
    for attr, key in (("is_mla", "mla"), ("supports_sliding_window", "sliding_window"), ("is_sparse", "sparse"),
                      ("supports_sink", "sink")):
        fn = getattr(cls, attr, None)
        if callable(fn):
            try:
                val = fn()
                if isinstance(val, bool):
                    out[key] = val
            except Exception:  # noqa: BLE001
                pass
    return out


def harvest_attention() -> Tuple[str, Dict[str, Dict[str, Any]]]:
    enum_path, enum = _backend_enum()
    members = list(enum.__members__.items())
    scanned: Optional[Tuple[Dict[str, List[str]], Dict[str, str]]] = None
    selector: Optional[Dict[str, str]] = None
    out: Dict[str, Dict[str, Any]] = {}
    for name, member in members:
        entry: Dict[str, Any] = {}
        path = _class_path_from_registry(member)
        if path is None:
            if scanned is None:
                scanned = _scan_backend_modules()
            paths = scanned[0].get(name, [])
            if not paths:  # 0.5.x-0.6.x: get_name() answers "flash-attn"; read the selector's mapping instead
                if selector is None:
                    selector = _selector_map()
                paths = [selector[name]] if name in selector else scanned[0].get(name.lower().replace("_", "-"), [])
                if paths:
                    entry["class_from"] = "selector"
            if not paths and scanned[0].get(name + "_VLLM_V1"):
                # 0.8-0.10: the V1 class of a backend answers NAME_VLLM_V1 (e.g. TORCH_SDPA in 0.10 on CPU)
                paths = scanned[0][name + "_VLLM_V1"]
                entry["class_from"] = "v1_name"
            # Two classes may answer the same name (V0 and V1 FlashAttention): prefer the V1 one, the default
            # engine from 0.8.0 on; the other is recorded too.
            paths = sorted(paths, key=lambda p: (".v1." not in p, "rocm" in p.lower() or "aiter" in p.lower(),
                                                 not _module_matches(p.rsplit(".", 1)[0], name), p))
            if paths:
                path = paths[0]
                if len(paths) > 1:
                    entry["also"] = paths[1:]
            else:
                guess = [m for m in scanned[1] if _module_matches(m, name)]
                entry["importable"] = False
                entry["error"] = ("no class answers get_name() == %r" % name) + (
                    "; failed modules: " + "; ".join(f"{m}: {scanned[1][m]}" for m in guess) if guess else "")
                entry["error"] = _clean(entry["error"], 500)
                out[name] = entry
                continue
        entry["class"] = path
        try:
            cls = _load_class(path)
        except BaseException as exc:  # noqa: BLE001
            entry["importable"] = False
            entry["error"] = _err(exc)
            out[name] = entry
            continue
        entry["importable"] = True
        entry["error"] = ""
        entry.update(_constraints(cls))
        if "mla" not in entry:
            entry["mla"] = "MLA" in name
            entry["mla_from_name"] = True
        out[name] = entry
    return enum_path, out


def _module_matches(module: str, name: str) -> bool:
    """Whether a failed module probably holds backend `name` (for the error text only)."""
    tail = module.rsplit(".", 1)[-1].replace("_", "")
    key = name.lower().replace("_vllm_v1", "").replace("_", "")
    return bool(tail) and (tail in key or key in tail)


def harvest() -> Dict[str, Any]:
    doc: Dict[str, Any] = {"release": harvest_release(), "kernels": harvest_kernels()}
    try:
        import vllm  # type: ignore[import-not-found]  # noqa: F401
    except BaseException as exc:  # noqa: BLE001
        doc["release"]["import_error"] = _err(exc)
    else:
        for key, fn in (("models", harvest_models), ("quantization", harvest_quantization)):
            try:
                doc[key] = fn()
            except BaseException as exc:  # noqa: BLE001
                doc["release"][f"{key}_error"] = _err(exc)
        try:
            enum_path, attention = harvest_attention()
            doc["release"]["attention_enum"] = enum_path
            doc["attention"] = attention
        except BaseException as exc:  # noqa: BLE001
            doc["release"]["attention_error"] = _err(exc)
    doc["arch"] = harvest_arch()
    return doc


# ----------------------------------------------------------------------------------------------- TOML out
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _long_list(k: str, v: List[Any]) -> str:
    line = f"{_key(k)} = {_value(v)}"
    if len(line) <= 118:
        return line
    return f"{_key(k)} = [\n" + "".join(f"  {_value(x)},\n" for x in v) + "]"


def to_toml(doc: Dict[str, Any]) -> str:
    """TOML for the harvest document: fixed table order, sorted sub-tables, one line per fact."""
    buf = io.StringIO()
    rel = doc["release"]
    buf.write(f"# Harvested from the installed vLLM {rel['vllm']} by tools/harvest.py; do not edit (docs/harvest.md).\n")
    buf.write("\n[release]\n")
    for k, v in rel.items():
        buf.write(f"{_key(k)} = {_value(v)}\n")
    buf.write("\n[kernels]\n")
    for k, v in doc["kernels"].items():
        buf.write(f"{_key(k)} = {_value(v)}\n")
    if "models" in doc:
        buf.write("\n[models]\n")
        buf.write(_long_list("architectures", doc["models"]["architectures"]) + "\n")
    for section in ("quantization", "attention"):
        for name, entry in sorted(doc.get(section, {}).items()):
            buf.write(f"\n[{section}.{_key(name)}]\n")
            for k, v in entry.items():
                buf.write((_long_list(k, v) if isinstance(v, list) else f"{_key(k)} = {_value(v)}") + "\n")
    arch = doc["arch"]
    buf.write("\n[arch]\n")
    for k, v in arch.items():
        if k != "files":
            buf.write(_long_list(k, v) + "\n")
    buf.write("\n[arch.files]\n")
    for k, v in arch.get("files", {}).items():
        buf.write(_long_list(k, v) + "\n")
    return buf.getvalue()


def out_name(version: str) -> str:
    return f"vllm-{version}.toml"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="directory for vllm-X.Y.Z.toml (default: %(default)s)")
    ap.add_argument("--stdout", action="store_true", help="print the TOML instead of writing a file")
    args = ap.parse_args(argv)
    try:
        md.version("vllm")
    except md.PackageNotFoundError:
        print("harvest: vllm is not installed in this env; run it inside a matrix env (tox -e vllm0110 ...)",
              file=sys.stderr)
        return 2
    # Recent vLLM (e.g. 0.33.0 vllm/triton_utils/importing.py) swaps triton for placeholders when triton finds no
    # active GPU driver, unless CUDA_VISIBLE_DEVICES is set and empty (its "distributed env" allowance). On a GPU
    # host triton has a driver, so the backends import; set it here, not only in the walk, so a harvest on this
    # CPU box records what a GPU user gets whatever the caller's environment (tests/vllm/test_tables_vs_harvest.py)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        doc = harvest()
    except BaseException:  # noqa: BLE001 - the metadata part failed: nothing worth writing
        traceback.print_exc()
        return 1
    text = to_toml(doc)
    if args.stdout:
        sys.stdout.write(text)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / out_name(doc["release"]["vllm"])
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    print(f"harvest: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
