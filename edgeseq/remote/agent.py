"""The helper edgeseq runs on a remote device, sent as `python -c SOURCE COMMAND ARGS` over ssh.

It runs with whatever Python the device has, before edgeseq is installed there: standard library
only, and syntax old Pythons can parse, so that a too-old one still reports its version. Each
command prints one JSON line.
"""
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig

MARKER = "edgeseq-remote.json"


def _free(path):
    while not os.path.isdir(path):
        path = os.path.dirname(path) or "/"
    return shutil.disk_usage(path).free


def probe(cache):
    """This Python, platform, free space, and what edgeseq install its venv holds."""
    cache = os.path.abspath(os.path.expanduser(cache))
    venv = os.path.join(cache, "venv-py%d%d" % sys.version_info[:2])
    installed = None
    try:
        with open(os.path.join(venv, MARKER)) as f:
            installed = json.load(f)
    except (OSError, ValueError):
        pass
    libc = platform.libc_ver()
    return {"python": list(sys.version_info[:3]), "implementation": platform.python_implementation(),
            "executable": sys.executable, "platform": sysconfig.get_platform(), "machine": platform.machine(),
            "glibc": libc[1] if libc[0] == "glibc" else None, "cache": cache, "free": _free(cache),
            "venv": venv, "installed": installed}


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def stage(final):
    """Whether `final` is complete, else the sizes of what a partial copy already holds."""
    if os.path.isdir(final):
        return {"final": True, "partial": {}}
    part = final + ".partial"
    os.makedirs(part, exist_ok=True)
    return {"final": False, "partial": {n: os.path.getsize(os.path.join(part, n)) for n in os.listdir(part)}}


def verify(final, spec):
    """Check every file of the partial copy against its SHA-256; a bad one is deleted (copied again next
    time); when all are right the copy becomes `final`."""
    part = final + ".partial"
    want = json.loads(spec)
    bad = []
    for name, digest in want.items():
        path = os.path.join(part, name)
        if not os.path.isfile(path) or _sha256(path) != digest:
            bad.append(name)
            if os.path.exists(path):
                os.remove(path)
    if not bad and not os.path.isdir(final):
        os.rename(part, final)
    return {"bad": bad}


def install(venv, wheelhouse, wheel, extras, marker):
    """A venv with this Python and `wheel` (edgeseq's, a path) plus `extras`, from the wheelhouse only
    (no index); `marker` (JSON) is written into it when done."""
    cache = os.path.dirname(venv)
    if not os.path.isdir(cache):
        os.makedirs(cache)
    with open(os.path.join(cache, ".install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two edgeseq runs at one device install one at a time
        py = os.path.join(venv, "bin", "python")
        if not os.path.exists(py):
            r = subprocess.run([sys.executable, "-m", "venv", venv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if r.returncode:
                shutil.rmtree(venv, ignore_errors=True)
                return {"error": "venv", "output": r.stdout.decode(errors="replace")[-1500:]}
        pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile", "--no-index", "--find-links",
               wheelhouse, "--find-links", os.path.dirname(wheel)]
        path = wheel
        steps = [pip + ["--force-reinstall", "--no-deps", path],  # the same version number, other files
                 pip + [path + ("[%s]" % ",".join(extras.split(",")) if extras else "")]]
        for argv in steps:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if r.returncode:
                return {"error": "pip", "output": r.stdout.decode(errors="replace")[-1500:]}
        with open(os.path.join(venv, MARKER), "w") as f:
            f.write(marker)
    return {"ok": True, "python": py}


def main(argv):
    if sys.version_info < (3, 6):
        print(json.dumps({"python": list(sys.version_info[:3])}))
        return
    command, args = argv[0], argv[1:]
    out = {"probe": probe, "stage": stage, "verify": verify, "install": install}[command](*args)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
