"""The wheelhouse a remote install reads: edgeseq's own wheel plus a wheel of every runtime dependency
(and of the engine extras asked for), gathered here so the device needs no package registry.

- edgeseq: a wheel written from this process's package files and metadata (the same version and
  code that runs here; no build backend or registry needed, editable installs included).
- dependencies, when the device's Python and platform are this host's: the installed distributions
  packed back into wheels (their files, their WHEEL tags), so the test's loopback device and a twin
  machine need no network at all.
- dependencies for another platform (an aarch64 board, another Python): `pip download
  --only-binary=:all: --platform ... --python-version ...` from the registry, here; or a folder the
  user filled the same way, named by EDGESEQ_WHEELHOUSE.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import io
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

from ..errors import RemoteError

_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same files make the same wheel, byte for byte
_SKIP_META = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
_GATHERING = threading.Lock()  # compare's devices gather in threads: one at a time fills the folder


def platform_tag(python: list[int] | tuple[int, ...], platform: str) -> str:
    """A folder name for one Python and platform, e.g. cp311-linux-x86_64."""
    return f"cp{python[0]}{python[1]}-{platform}"


def local_tag() -> str:
    return platform_tag(sys.version_info[:2], sysconfig.get_platform())


def wheelhouse_dir(tag: str) -> Path:
    from ..runtimes.host.disk_cache import cache_root

    given = os.environ.get("EDGESEQ_WHEELHOUSE")
    return Path(given) if given else cache_root() / "remote-wheels" / tag


def gather(probe: dict[str, Any], extras: list[str], host: str) -> Path:
    """The folder of dependency wheels for the device `probe` describes, for edgeseq with `extras`."""
    with _GATHERING:
        return _gather(probe, extras, host)


def _gather(probe: dict[str, Any], extras: list[str], host: str) -> Path:
    tag = platform_tag(probe["python"], probe["platform"])
    out = wheelhouse_dir(tag)
    out.mkdir(parents=True, exist_ok=True)
    if os.environ.get("EDGESEQ_WHEELHOUSE"):
        return out  # the user's folder: pip on the device says what is missing
    if tag == local_tag() and probe.get("implementation", "CPython") == "CPython":
        for dist in closure(extras):
            if not any(out.glob(f"{_file_name(dist.metadata['Name'])}-{dist.version}-*.whl")):
                repack(dist, out)
    else:
        download(probe, extras, out, host)
    return out


def closure(extras: list[str]) -> list[md.Distribution]:
    """The installed distributions edgeseq with `extras` needs at run time (edgeseq itself left out)."""
    from packaging.requirements import Requirement

    seen: dict[str, md.Distribution] = {}
    todo = [(r, e) for r in md.distribution("edgeseq").requires or [] for e in ["", *extras]]
    while todo:
        line, extra = todo.pop()
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = _norm(req.name)
        if name in seen:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            raise RemoteError(f"'{req.name}' (needed by edgeseq{'[' + extra + ']' if extra else ''}) is not "
                              "installed here, so no wheel of it can be sent", f"pip install 'edgeseq[{extra}]' "
                              "here first, or fill a wheelhouse and name it with EDGESEQ_WHEELHOUSE") from None
        seen[name] = dist
        todo += [(r, e) for r in dist.requires or [] for e in ["", *req.extras]]
    return list(seen.values())


def edgeseq_wheel() -> Path:
    """edgeseq's wheel, from the package files this process runs and its installed metadata."""
    import edgeseq
    from ..runtimes.host.disk_cache import cache_root

    dist = md.distribution("edgeseq")
    version = edgeseq.__version__
    pkg = Path(edgeseq.__file__).parent
    files = {f"edgeseq/{p.relative_to(pkg).as_posix()}": p.read_bytes() for p in sorted(pkg.rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    info = f"edgeseq-{version}.dist-info"
    # METADATA of an installed wheel; PKG-INFO of an egg-info a source build leaves beside the checkout
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    if "\nName:" not in "\n" + text:
        raise RemoteError(f"edgeseq's installed metadata ({dist.locate_file('')}) names no package, so no wheel "
                          "of it can be made", "reinstall edgeseq (pip install -e .), or remove a stale "
                          "edgeseq.egg-info from the working directory")
    meta = re.sub(r"(?m)^Version: .*$", f"Version: {version}", text)
    files[f"{info}/METADATA"] = meta.encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: edgeseq\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entry = dist.read_text("entry_points.txt")
    if entry:
        files[f"{info}/entry_points.txt"] = entry.encode()
    out = cache_root() / "remote-wheels" / "edgeseq"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"edgeseq-{version}-py3-none-any.whl"
    with _GATHERING:
        _write_wheel(path, info, files)
    return path


def repack(dist: md.Distribution, out: Path) -> Path:
    """An installed distribution as the wheel it came from: its files in site-packages and its tags."""
    meta_dir = next((Path(str(f)).parts[0] for f in dist.files or [] if str(f).endswith(".dist-info/METADATA")),
                    None)
    wheel_text = dist.read_text("WHEEL") or ""
    tags = [ln.split(":", 1)[1].strip() for ln in wheel_text.splitlines() if ln.startswith("Tag:")]
    if meta_dir is None or not tags:
        raise RemoteError(f"the installed {dist.metadata['Name']} has no wheel record to send",
                          "reinstall it with pip, or fill a wheelhouse and name it with EDGESEQ_WHEELHOUSE")
    files: dict[str, bytes] = {}
    for f in dist.files or []:
        rel = Path(str(f))
        if rel.parts[0] == ".." or "__pycache__" in rel.parts or rel.suffix == ".pyc":
            continue  # scripts in bin/ and caches: not needed to import the package
        if rel.parts[0] == meta_dir and rel.name in _SKIP_META:
            continue
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            files[rel.as_posix()] = path.read_bytes()
    parts = [sorted({t.split("-")[i] for t in tags}) for i in range(3)]
    name = f"{_file_name(dist.metadata['Name'])}-{dist.version}-" + "-".join(".".join(p) for p in parts) + ".whl"
    _write_wheel(out / name, meta_dir, files)
    return out / name


def download(probe: dict[str, Any], extras: list[str], out: Path, host: str) -> None:
    """Wheels for another platform and Python from the registry, into `out` (pip's own cache reused)."""
    from packaging.requirements import Requirement

    reqs = []
    for line in md.distribution("edgeseq").requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
            req.marker = None
            reqs.append(str(req))
    plat = probe["platform"]
    if plat.startswith("linux-"):
        machine = plat.split("-", 1)[1]
        glibc = int((probe.get("glibc") or "2.17").split(".")[1])
        flags = [f"--platform=manylinux_2_{n}_{machine}" for n in range(17, glibc + 1)] + \
            [f"--platform=manylinux2014_{machine}", f"--platform=linux_{machine}"]
    else:
        flags = [f"--platform={re.sub(r'[-.]', '_', plat)}"]
    py = f"{probe['python'][0]}.{probe['python'][1]}"
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                        "--only-binary=:all:", "--implementation", "cp", "--python-version", py, *flags,
                        "-d", str(out), *reqs], capture_output=True, text=True)
    if r.returncode:
        raise wheel_error(r.stdout + r.stderr, extras, host, plat, py)


def wheel_error(output: str, extras: list[str], host: str, plat: str, py: str) -> RemoteError:
    """pip's failure to find or install a wheel, as one line naming what did not install."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    found = next((ln for ln in lines if "No matching distribution" in ln or "is not a supported wheel" in ln
                  or "Could not find a version" in ln), lines[-1] if lines else "pip failed")
    what = f"the engine extra(s) {', '.join(extras)}" if extras else "edgeseq's runtime"
    return RemoteError(f"{what} do(es) not install on {host} ({plat}, Python {py}): {found[:240]}",
                       "profile there with an engine that has wheels for that platform (e.g. --engine onnxruntime), "
                       "or put wheels that fit into a folder and name it with EDGESEQ_WHEELHOUSE")


def _write_wheel(path: Path, meta_dir: str, files: dict[str, bytes]) -> None:
    record = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            data = files[name]
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append(f"{meta_dir}/RECORD,,")
        info = zipfile.ZipInfo(f"{meta_dir}/RECORD", _EPOCH)
        info.external_attr = 0o644 << 16
        z.writestr(info, "\n".join(record) + "\n")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")  # a concurrent writer has its own
    with os.fdopen(fd, "wb") as f:
        f.write(buf.getvalue())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _file_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()
