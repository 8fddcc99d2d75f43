"""The release version, for programs that run without package metadata (one-file binaries).

PyInstaller and Nuitka bundle the code, not the distribution's metadata, so
`importlib.metadata.version` finds nothing there; both programs fall back to
this constant, which a test keeps equal to pyproject.toml's version.
"""

VERSION = "0.1.0"
