"""Pack built binaries into release archives and write SHA256SUMS.

Run by scripts/release.sh with the build venv's Python, so it behaves the same
on Linux and macOS (no GNU tar or sha256sum needed):

    python packaging/archive.py pack TARGET_DIR FLAVOUR NAME DOC...
    python packaging/archive.py sums DIR

``pack`` turns TARGET_DIR/FLAVOUR/{chat-server,chat-client} (plus the docs given)
into TARGET_DIR/NAME.tar.gz with one top folder NAME/; entries are sorted and
have fixed owners and the SOURCE_DATE_EPOCH time, so the archive depends only on
its files. ``sums`` writes DIR/SHA256SUMS in the format ``sha256sum -c`` reads,
covering every regular file below DIR (binaries and archives), and prints sizes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

PROGRAMS = ("chat-server", "chat-client")
SUMS = "SHA256SUMS"


def _mtime() -> int:
    """Timestamp for archive entries: SOURCE_DATE_EPOCH when set."""
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def _add(tar: tarfile.TarFile, path: Path, arcname: str, mode: int) -> None:
    """Add one regular file with normalised metadata."""
    info = tarfile.TarInfo(arcname)
    info.size = path.stat().st_size
    info.mode = mode
    info.mtime = _mtime()
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    with path.open("rb") as handle:
        tar.addfile(info, handle)


def pack(target_dir: Path, flavour: str, name: str, docs: list[Path]) -> Path:
    """Write TARGET_DIR/NAME.tar.gz from the flavour's binaries and the docs."""
    source = target_dir / flavour
    archive = target_dir / f"{name}.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folder = tarfile.TarInfo(name)
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        folder.mtime = _mtime()
        tar.addfile(folder)
        for program in PROGRAMS:
            _add(tar, source / program, f"{name}/{program}", 0o755)
        for doc in sorted(docs):
            _add(tar, doc, f"{name}/{doc.name}", 0o644)
    # mtime=0 and no file name in the gzip header: same input, same bytes.
    with (
        archive.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(buffer.getvalue())
    return archive


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sums(directory: Path) -> Path:
    """Write DIRECTORY/SHA256SUMS over every file below it and print sizes."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != SUMS)
    lines = []
    for path in files:
        rel = path.relative_to(directory).as_posix()
        lines.append(f"{_sha256(path)}  {rel}\n")
        print(f"{path.stat().st_size / 1e6:8.2f} MB  {rel}")
    out = directory / SUMS
    out.write_text("".join(lines), encoding="ascii")
    return out


def main(argv: list[str]) -> int:
    """Dispatch the two sub-commands; usage errors exit 2."""
    if len(argv) >= 4 and argv[0] == "pack":
        docs = [Path(p) for p in argv[4:]]
        print(pack(Path(argv[1]), argv[2], argv[3], docs))
        return 0
    if len(argv) == 2 and argv[0] == "sums":
        print(sums(Path(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
