"""Where the JSON comes from: a zip, a bare .json file or an unpacked folder.

Only the conversations files (and the optional manifest) are ever opened;
media folders, users.json, projects.json and the like are listed in the zip's
central directory but never decompressed. Everything that can be checked
before reading is checked here: member names, declared sizes and ratios.

Only regular files are opened. A FIFO would block the open (and the worker
with it) for good, a device streams without end: the export itself, and in a
folder every file that is read, must be a regular file. A symlink in a folder
is followed only to a regular file inside that folder. Every open re-checks
the file it got (opened non-blocking, then fstat), so a file swapped after
the scan cannot block either.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from .capped import RATIO_MIN_BYTES, Budget, CappedReader
from .errors import ExportError, fmt_size
from .limits import ParseLimits

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive
_SPLIT_RE = re.compile(r"conversations-(\d+)\.json", re.IGNORECASE)
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
MANIFEST = "export_manifest.json"
MAX_MANIFEST_BYTES = 16 << 20  # a file list, not content


@dataclass(slots=True)
class Member:
    """One JSON file to read: a zip member name or a path inside a folder."""

    name: str  # as shown in messages: "conversations.json", "export/conversations-001.json"
    key: str  # zip member name, or filesystem path
    size: int  # declared (zip) or actual (file) uncompressed size
    compressed: int | None = None  # zip members only


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"),
)


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages: "a FIFO", "a character device", ..."""
    return next((name for is_kind, name in _KINDS if is_kind(mode)), "a special file")


def open_regular(path: str, what: str):
    """``path`` opened for binary reading if it is a regular file, else ExportError("not_regular").

    Opened non-blocking, so a FIFO (with no writer) cannot hang the open, and
    checked on the descriptor itself; blocking again once known to be a file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ExportError("not_regular", f"{what} is not a regular file ({file_kind(mode)})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def resolve_path(source) -> Path:
    """str, Path or file:// URI -> Path (not necessarily existing)."""
    if isinstance(source, os.PathLike):
        return Path(source)
    if not isinstance(source, str):
        raise TypeError(f"export source must be a path or file:// URI, not {type(source).__name__}")
    if "://" in source or source.startswith("file:"):
        parsed = urlparse(source)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            raise ExportError("not_found", f"unsupported export source {source!r}: only local paths and file:// URIs")
        return Path(unquote(parsed.path))
    return Path(source)


def unsafe_member_name(name: str) -> bool:
    """True for names that would escape a folder if someone did extract them."""
    if not name or "\x00" in name:
        return True
    if name[0] in "/\\" or _DRIVE_RE.match(name):
        return True
    return ".." in re.split(r"[\\/]", name)


def is_conversations_file(basename: str) -> bool:
    low = basename.lower()
    return low == "conversations.json" or _SPLIT_RE.fullmatch(low) is not None


def _split_index(basename: str) -> int:
    m = _SPLIT_RE.fullmatch(basename)
    return int(m.group(1)) if m else -1


def _dirname(name: str) -> str:
    return name.rpartition("/")[0]


class ExportSource:
    """The files of one export, opened lazily, read in order."""

    def __init__(self, source, limits: ParseLimits) -> None:
        self.limits = limits
        self.path = resolve_path(source)
        self.display = self.path.name or str(self.path)
        self.kind = ""  # "zip" | "file" | "folder"
        self.members: list[Member] = []
        self.manifest: Member | None = None
        self.split = False  # 2026 layout: conversations-000.json, -001.json, ...
        self._zip: zipfile.ZipFile | None = None
        self._zip_file = None  # the archive's own file, opened by open_regular
        self._all_names: set[str] = set()
        self._folder = ""
        self._open()

    # ----------------------------------------------------------------- opening
    def _open(self) -> None:
        path = self.path
        try:
            mode = path.stat().st_mode  # through a symlink: the export is what it names
            if stat.S_ISDIR(mode):
                self.kind = "folder"
                self._scan_folder()
                return
            if not stat.S_ISREG(mode):
                raise ExportError("not_regular", f"export {path} is not a regular file or folder ({file_kind(mode)})")
            with open_regular(str(path), f"export {path}") as f:
                head = f.read(64)
        except (FileNotFoundError, NotADirectoryError):
            raise ExportError("not_found", f"export not found: {path}") from None
        except OSError as e:
            raise ExportError("io_error", f"cannot read {self.display}: {e.strerror or e}") from None
        if head.startswith(ZIP_MAGIC):
            self.kind = "zip"
            self._scan_zip()
        else:
            # A bare JSON file; its content is sniffed when it is read.
            self.kind = "file"
            self.members = [Member(self.display, str(path), path.stat().st_size)]
            self._check_total()

    def _scan_zip(self) -> None:
        try:
            zf = self._open_zip()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
            self.close()
            raise ExportError("bad_zip", f"corrupt zip archive {self.display}: {e}") from None
        except OSError as e:
            raise ExportError("io_error", f"cannot read {self.display}: {e.strerror or e}") from None
        try:
            self._check_zip(zf)
        except ExportError:
            self.close()
            raise

    def _open_zip(self) -> zipfile.ZipFile:
        self._zip_file = open_regular(str(self.path), f"export {self.path}")
        self._zip = zipfile.ZipFile(self._zip_file)
        return self._zip

    def _check_zip(self, zf: zipfile.ZipFile) -> None:
        files: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            # Checked for every member, read or not: an archive carrying a
            # path-traversal name is hostile, whatever else it holds.
            for name in (info.filename, info.orig_filename):
                if unsafe_member_name(name):
                    raise ExportError("unsafe_zip", f"zip member name is unsafe: {name!r}")
            if info.is_dir():
                continue
            name = info.filename.replace("\\", "/")
            if name.startswith("__MACOSX/"):  # Finder's resource forks
                continue
            files[name] = info
        sizes = {name: (info.file_size, info.compress_size, info.filename) for name, info in files.items()}
        self._select(sizes, where=f"the zip {self.display}")
        for m in self.members + ([self.manifest] if self.manifest else []):
            info = files[m.name]
            if info.flag_bits & 0x1:
                raise ExportError("bad_zip", f"zip member {m.name} is encrypted")
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > RATIO_MIN_BYTES and ratio > self.limits.max_compression_ratio:
                raise ExportError(
                    "zip_bomb",
                    f"zip member {m.name} would expand {ratio:,.0f}:1 "
                    f"(limit max_compression_ratio {self.limits.max_compression_ratio:g})",
                )
        self._check_total()

    def _scan_folder(self) -> None:
        root = self.path
        real_root = os.path.realpath(root)
        sizes: dict[str, tuple[int, None, str]] = {}
        unreadable: dict[str, str] = {}  # name -> why it may not be read
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # deterministic
            for fn in filenames:
                if is_conversations_file(fn) or fn.lower() == MANIFEST:
                    full = os.path.join(dirpath, fn)
                    rel = os.path.relpath(full, root).replace(os.sep, "/")
                    try:
                        size, problem = _folder_file(full, real_root)
                    except OSError:
                        continue
                    sizes[rel] = (size, None, full)
                    if problem:
                        unreadable[rel] = problem
        self._select(sizes, where=f"the folder {self.display}")
        for m in self.members + ([self.manifest] if self.manifest else []):
            if m.name in unreadable:
                raise ExportError("not_regular", f"{m.name} in {self.display} {unreadable[m.name]}")
        self._check_total()

    def _select(self, sizes: dict[str, tuple[int, int | None, str]], where: str) -> None:
        """sizes: normalised name ("a/b.json") -> (size, compressed size or None, key to open)."""
        # Pick the conversations files: the manifest's list, split files or conversations.json.
        by_dir: dict[str, list[str]] = {}
        manifests: dict[str, str] = {}
        for name in sizes:
            base = name.rpartition("/")[2]
            if is_conversations_file(base):
                by_dir.setdefault(_dirname(name), []).append(name)
            elif base.lower() == MANIFEST:
                manifests[_dirname(name)] = name
        if not by_dir:
            raise ExportError("not_found", f"no conversations.json in {where}")
        # The export's own folder: the one with a manifest, else the shallowest.
        dirs = sorted(by_dir, key=lambda d: (d not in manifests, d.count("/") + (d != ""), d))
        folder = dirs[0]
        names = by_dir[folder]
        split = sorted((n for n in names if _split_index(n.rpartition("/")[2].lower()) >= 0),
                       key=lambda n: _split_index(n.rpartition("/")[2].lower()))
        # 2026 layout: numbered files win over a single conversations.json beside them.
        chosen = split or [n for n in names if n.rpartition("/")[2].lower() == "conversations.json"][:1]
        self.split = bool(split)

        def member(name: str) -> Member:
            size, compressed, key = sizes[name]
            return Member(name, key, size, compressed)

        self.members = [member(n) for n in chosen]
        if folder in manifests:
            self.manifest = member(manifests[folder])
        self._all_names = set(sizes)  # for manifest lookups
        self._folder = folder

    def apply_manifest(self, listed: list[str]) -> None:
        """Use the manifest's file order; a listed file that is missing is an error."""
        if not listed:
            return
        prefix = f"{self._folder}/" if self._folder else ""
        chosen: list[Member] = []
        known = {m.name: m for m in self.members}
        for entry in listed:
            entry = entry.replace("\\", "/")
            while entry.startswith("./"):
                entry = entry[2:]
            base = entry.rpartition("/")[2]
            if not is_conversations_file(base):
                continue
            candidates = [entry, prefix + entry, prefix + base]
            found = next((known[c] for c in candidates if c in known), None)
            if found is None:
                if any(c in self._all_names for c in candidates):
                    continue  # present but not chosen (e.g. a conversations.json beside split files)
                raise ExportError("not_found", f"{MANIFEST} lists {entry} but {self.display} does not contain it")
            if found not in chosen:
                chosen.append(found)
        if chosen:
            # Listed files first in the manifest's order, then any it did not mention.
            self.members = chosen + [m for m in self.members if m not in chosen]

    def _check_total(self) -> None:
        total = sum(m.size for m in self.members)
        if total > self.limits.max_uncompressed_bytes:
            code = "zip_bomb" if self.kind == "zip" else "too_large"
            raise ExportError(
                code,
                f"{self.display} declares {total:,} bytes of conversations, more than "
                f"{fmt_size(self.limits.max_uncompressed_bytes)} (limit max_uncompressed_bytes)",
            )

    # ----------------------------------------------------------------- reading
    def new_budget(self) -> Budget:
        code = "zip_bomb" if self.kind == "zip" else "too_large"
        return Budget(self.limits.max_uncompressed_bytes, code, self.display)

    def open(self, member: Member, budget: Budget) -> CappedReader:
        """A fresh capped stream over one member (zip members stream-decompress)."""
        name = member.name if self.kind == "file" else f"{member.name} in {self.display}"
        try:
            if self.kind == "zip":
                raw = (self._zip if self._zip is not None else self._open_zip()).open(member.key)
            else:
                raw = open_regular(member.key, name)
        except (zipfile.BadZipFile, RuntimeError, ValueError, EOFError) as e:
            raise ExportError("bad_zip", f"cannot open {member.name} in {self.display}: {e}") from None
        except OSError as e:
            raise ExportError("io_error", f"cannot read {member.name}: {e.strerror or e}") from None
        return CappedReader(raw, name, self.limits, budget, member.compressed)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        if self._zip_file is not None:
            self._zip_file.close()
            self._zip_file = None


def _folder_file(path: str, real_root: str) -> tuple[int, str]:
    """(size, "" or why the file at ``path`` may not be read) for a file of a folder export."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        target = os.path.realpath(path)
        if os.path.commonpath((target, real_root)) != real_root:
            return 0, "is a symlink out of the export folder"
        info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        return 0, f"is not a regular file ({file_kind(info.st_mode)})"
    return info.st_size, ""
