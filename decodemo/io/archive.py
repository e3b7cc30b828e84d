"""Unpacking a zip archive of uploads safely.

Every member is checked from the archive's directory before anything is written: a name that
leaves the archive's folder (``../``, an absolute path, a drive letter) refuses the whole
archive, and so do more members or more bytes than the limits. Folders, links, encrypted
members, macOS metadata and files that are neither images nor sounds are skipped and listed.
A media member is refused on its own (with the upload loader's message) when it is empty or
larger than an upload of its kind may be (:data:`decodemo.io.images.DEFAULT_MAX_BYTES`,
:data:`decodemo.io.audio.DEFAULT_MAX_AUDIO_BYTES`).
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from decodemo.errors import CorruptFileError, FileTooLargeError, InputError
from decodemo.io.audio import AUDIO_EXTENSIONS, DEFAULT_MAX_AUDIO_BYTES
from decodemo.io.images import DEFAULT_MAX_BYTES, IMAGE_EXTENSIONS
from decodemo.io.source import _check_size, _human_bytes

__all__ = ["MEDIA_EXTENSIONS", "MAX_ARCHIVE_MEMBERS", "MAX_ARCHIVE_BYTES", "ArchiveMember", "Unpacked",
           "is_archive", "count_media", "unpack_zip"]

#: the file kinds a batch compares: images and sounds
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS + AUDIO_EXTENSIONS
#: entries (files and folders) one archive may list
MAX_ARCHIVE_MEMBERS = 1000
#: bytes one archive may unpack to, all members together: four of the largest single upload (a sound)
MAX_ARCHIVE_BYTES = 4 * DEFAULT_MAX_AUDIO_BYTES

_CHUNK = 2**20


@dataclass(frozen=True)
class ArchiveMember:
    """One image or sound of an archive: where it was unpacked, or why it was not."""

    name: str  # its path inside the archive ("parts/a.png")
    path: Path | None  # the unpacked file; None when refused
    error: str | None = None


@dataclass
class Unpacked:
    """What :func:`unpack_zip` found: the media members, and the names of those it skipped."""

    members: list[ArchiveMember] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not images or sounds, links, encrypted, metadata
    folders: int = 0

    def note(self, archive: str) -> str | None:
        """One line for a person about what was skipped, or ``None``."""
        if not self.skipped:
            return None
        shown = ", ".join(self.skipped[:5]) + (f" and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else "")
        n = len(self.skipped)
        return (f"{archive}: skipped {n} member{'s' if n != 1 else ''} that {'are' if n != 1 else 'is'} not "
                f"an image or a sound ({shown})")


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` is named as a zip archive (the batch opens it instead of comparing it)."""
    return Path(path).suffix.lower() == ".zip"


def _unsafe(name: str) -> bool:
    """Whether a member name points outside the archive's folder."""
    clean = name.replace("\\", "/")
    if "\x00" in clean or clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        return True
    return ".." in PurePosixPath(clean).parts


def _skip_reason(info: zipfile.ZipInfo) -> str | None:
    """Why a (file) member is not unpacked, or ``None`` for an image or a sound."""
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a link"
    if "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1].startswith("."):
        return "metadata"
    if info.flag_bits & 0x1:
        return "encrypted"
    if PurePosixPath(parts[-1]).suffix.lower() not in MEDIA_EXTENSIONS:
        return "not media"
    return None


def _member_limit(name: str) -> tuple[int, str]:
    if PurePosixPath(name).suffix.lower() in AUDIO_EXTENSIONS:
        return DEFAULT_MAX_AUDIO_BYTES, "audio file"
    return DEFAULT_MAX_BYTES, "image"


def _open(source: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptFileError(f"'{source.name}' could not be opened as a zip archive ({exc}).") from None


def count_media(source: str | Path) -> int:
    """How many images and sounds the zip archive ``source`` would unpack (from its directory
    only; nothing is unpacked). Raises :class:`CorruptFileError` for a file that is not a zip."""
    with _open(Path(source)) as zf:
        return sum(not i.is_dir() and _skip_reason(i) is None for i in zf.infolist())


def unpack_zip(source: str | Path, dest: str | Path, *, max_media: int | None = None,
               max_members: int = MAX_ARCHIVE_MEMBERS, max_bytes: int = MAX_ARCHIVE_BYTES) -> Unpacked:
    """Unpack the images and sounds of the zip archive ``source`` under ``dest``.

    Each media member is written to ``dest/<nnnn>/<its base name>`` (so duplicate names inside
    the archive cannot collide), never to a path the archive names.

    Args:
        source: the archive's path.
        dest: the folder to unpack into (created).
        max_media: at most this many images and sounds (``None``: no limit beyond ``max_members``).
        max_members: at most this many entries in the archive's directory.
        max_bytes: at most this many bytes unpacked in all.

    Raises:
        InputError: a member's name leaves the archive's folder, or there are too many members.
        FileTooLargeError: the media members hold more than ``max_bytes`` bytes in all.
        CorruptFileError: the file is not a zip archive, or a member is larger than its header says.
    """
    source, dest = Path(source), Path(dest)
    label = f"'{source.name}'"
    with _open(source) as zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise InputError(f"{label} lists {len(infos)} members; an archive may hold at most {max_members}. "
                             "Split it into smaller archives.")
        for info in infos:
            if _unsafe(info.filename):
                raise InputError(f"{label} holds a member named '{info.filename}', which points outside the "
                                 "archive's folder; such archives are refused. Zip the files with paths "
                                 "relative to one folder.")
        out = Unpacked()
        media = []
        for info in infos:
            if info.is_dir():
                out.folders += 1
                continue
            if _skip_reason(info) is None:
                media.append(info)
            else:
                out.skipped.append(info.filename)
        if max_media is not None and len(media) > max_media:
            raise InputError(f"{label} holds {len(media)} images and sounds; at most {max_media} can be taken "
                             "here. Split it into smaller archives.")
        declared = sum(i.file_size for i in media)
        if declared > max_bytes:
            raise FileTooLargeError(f"{label} unpacks to {_human_bytes(declared)} of images and sounds; the limit "
                                    f"is {_human_bytes(max_bytes)}. Split it into smaller archives.")
        dest.mkdir(parents=True, exist_ok=True)
        total = 0
        for n, info in enumerate(media):
            base = PurePosixPath(info.filename.replace("\\", "/")).name
            limit, kind = _member_limit(base)
            try:
                _check_size(info.file_size, limit, base, kind, exact=True)  # the upload loader's words
            except InputError as exc:
                out.members.append(ArchiveMember(info.filename, None, str(exc)))
                continue
            target = dest / f"{n:04d}" / base
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > info.file_size or total + written > max_bytes:
                            raise CorruptFileError(f"{label}: member '{info.filename}' holds more bytes than "
                                                   "its header says; the archive is refused.")
                        dst.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                target.unlink(missing_ok=True)
                out.members.append(ArchiveMember(info.filename, None,
                                                 f"'{base}' could not be unpacked from {label} ({exc})."))
                continue
            total += written
            out.members.append(ArchiveMember(info.filename, target))
        return out
