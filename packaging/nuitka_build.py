"""Nuitka recipe for one one-file program (chat-server or chat-client).

Run by scripts/release.sh inside its build venv:
    python packaging/nuitka_build.py chat-server --output-dir DIR --work-dir DIR
Nuitka has no spec file, so the options live here as a list rather than as a
long command line in the shell script. The binary carries the same files as the
PyInstaller one (bundle_data.program_files: libxor and libchatdispatch in the
server only, at chat/server/). It is
slow (minutes per program on two cores) and stays out of CI; ccache on PATH
makes rebuilds about twice as fast.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import bundle_data

PROGRAMS = bundle_data.PROGRAMS


def data_files(program: str) -> list[tuple[Path, str]]:
    """Return (source, destination file in the bundle) for one program."""
    binaries, datas = bundle_data.program_files(program)
    return [(src, f"{dest}/{src.name}") for src, dest in (*binaries, *datas)]


def nuitka_options(program: str, work_dir: Path) -> list[str]:
    """The whole recipe: one-file, lean, compressed, data files included."""
    options = [
        "--onefile",
        "--assume-yes-for-downloads",
        "--remove-output",
        f"--output-dir={work_dir}",
        f"--output-filename={program}",
        # The default --onefile-tempdir-spec unpacks under $TMPDIR (or /tmp):
        # a noexec /tmp is fixed by pointing TMPDIR elsewhere (docs/release.md).
        "--python-flag=no_site",
        "--noinclude-setuptools-mode=nofollow",
        "--noinclude-unittest-mode=nofollow",
        "--noinclude-pydoc-mode=nofollow",
    ]
    options += [f"--nofollow-import-to={name}" for name in bundle_data.EXCLUDED_MODULES]
    options += [f"--include-data-files={src}={dest}" for src, dest in data_files(program)]
    return options


def build(program: str, output_dir: Path, work_dir: Path) -> Path:
    """Compile one program and move the binary into output_dir."""
    work_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "nuitka",
        *nuitka_options(program, work_dir),
        str(bundle_data.entry_script(program)),
    ]
    subprocess.run(command, check=True)
    target = output_dir / program
    shutil.move(str(work_dir / program), target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and build the requested program."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program", choices=PROGRAMS)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    print(build(args.program, args.output_dir, args.work_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
