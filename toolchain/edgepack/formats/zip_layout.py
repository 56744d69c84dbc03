"""Is this zip read the same way by every reader? Its local entries must match its central
directory one to one.

A zip file says what it holds twice: a local header in front of each entry's data, read by
streaming unzippers (Java's ZipInputStream, many app-side loaders), and the central directory at
the end, read by random-access ones (Python's zipfile, PyTorch). A file whose two lists differ
shows each reader something else: an extra local entry in front of a signed bundle's model, with
the same name and no central record, passes every check made through the central directory and
is what a streaming reader installs. So a zip is accepted only when, walking from byte 0, every
local header is exactly the next central record (same name, flags, method, sizes), each entry's
data (and data descriptor) ends where the next header starts, the last ends where the central
directory starts, and the end records close the file: no leading, trailing, extra, overlapping
or hidden entries, and no bytes between them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

_EOCD = struct.Struct("<4sHHHHIIH")  # end of central directory, 22 bytes
_EOCD64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_MAX_COMMENT = 0xFFFF
_ZIP64_TAG = 0x0001
#: flag bit 3: sizes and CRC follow the data in a data descriptor
_DESCRIPTOR_FLAG = 0x08


class ZipLayoutError(ValueError):
    """The archive's local entries and central directory disagree; the message says where."""


class ZipTruncatedError(ZipLayoutError):
    """The archive ends early or its end records are missing: corrupt rather than crafted."""


@dataclass(frozen=True)
class ZipEntry:
    """One entry as the central directory and its local header agree it is."""

    name: str
    header_offset: int
    data_offset: int
    compress_size: int
    file_size: int


@dataclass
class _Central:
    name: bytes
    flags: int
    method: int
    crc: int
    compress_size: int
    file_size: int
    offset: int


def check_layout(fh: BinaryIO, size: int) -> list[ZipEntry]:
    """The entries of the zip in ``fh`` (``size`` bytes) in file order; ZipLayoutError unless
    its local entries and central directory match one to one with nothing between them."""
    count, cd_size, cd_offset = _end_records(fh, size)
    central = _central_directory(fh, cd_offset, cd_size, count)
    central.sort(key=lambda c: c.offset)
    entries, pos = [], 0
    for record in central:
        if record.offset != pos:
            what = "data before the first entry" if pos == 0 else "bytes between entries"
            if record.offset < pos:
                what = "entries that overlap"
            raise ZipLayoutError(f"{what} (at byte {min(pos, record.offset):,})")
        entry, pos = _local(fh, record)
        entries.append(entry)
    if pos != cd_offset:
        raise ZipLayoutError(f"{cd_offset - pos:,} bytes after the last entry that no central "
                             "record describes")
    if not central and cd_offset != 0:
        raise ZipLayoutError("data before the central directory of an empty archive")
    return entries


def _read(fh: BinaryIO, at: int, n: int) -> bytes:
    fh.seek(at)
    data = fh.read(n)
    if len(data) != n:
        raise ZipTruncatedError(f"truncated at byte {at + len(data):,}")
    return data


def _end_records(fh: BinaryIO, size: int) -> tuple[int, int, int]:
    """(entry count, central directory size, central directory offset)."""
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    tail = _read(fh, tail_start, size - tail_start)
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0:  # the end record whose comment ends exactly at the end of the file
        if at + _EOCD.size <= len(tail):
            comment = struct.unpack_from("<H", tail, at + 20)[0]
            if tail_start + at + _EOCD.size + comment == size:
                break
        at = tail.rfind(b"PK\x05\x06", 0, at)
    if at < 0:
        raise ZipTruncatedError("no end-of-central-directory record ending the file "
                                "(truncated, or data after it)")
    eocd_at = tail_start + at
    _, disk, cd_disk, on_disk, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    if disk or cd_disk or on_disk != count:
        raise ZipLayoutError("a multi-disk archive")
    locator = _read(fh, eocd_at - _EOCD64_LOCATOR.size, 4) if eocd_at >= 20 else b""
    if locator == b"PK\x06\x07" or count == 0xFFFF or 0xFFFFFFFF in (cd_size, cd_offset):
        count64, size64, offset64 = _zip64_end(fh, eocd_at)
        for value, placeholder, real in ((count, 0xFFFF, count64), (cd_size, 0xFFFFFFFF, size64),
                                         (cd_offset, 0xFFFFFFFF, offset64)):
            if value not in (placeholder, real):
                raise ZipLayoutError("the end record and the zip64 end record disagree")
        return count64, size64, offset64
    if cd_offset + cd_size != eocd_at:
        raise ZipLayoutError("the central directory does not end where the end record starts "
                             "(data before the archive, or hidden after its entries)")
    return count, cd_size, cd_offset


def _zip64_end(fh: BinaryIO, eocd_at: int) -> tuple[int, int, int]:
    locator_at = eocd_at - _EOCD64_LOCATOR.size
    if locator_at < 0:
        raise ZipLayoutError("a zip64 archive without its zip64 end locator")
    sig, disk, record_at, disks = _EOCD64_LOCATOR.unpack(_read(fh, locator_at,
                                                               _EOCD64_LOCATOR.size))
    if sig != b"PK\x06\x07" or disk != 0 or disks != 1:
        raise ZipLayoutError("a zip64 archive without a valid zip64 end locator")
    (sig, record_size, _, _, disk, cd_disk, on_disk, count, cd_size,
     cd_offset) = _EOCD64.unpack(_read(fh, record_at, _EOCD64.size))
    if sig != b"PK\x06\x06":
        raise ZipLayoutError("a zip64 end locator that points at no zip64 end record")
    if record_at + 12 + record_size != locator_at:
        raise ZipLayoutError("bytes between the zip64 end record and its locator")
    if disk or cd_disk or on_disk != count:
        raise ZipLayoutError("a multi-disk archive")
    if cd_offset + cd_size != record_at:
        raise ZipLayoutError("the central directory does not end where the zip64 end record "
                             "starts")
    return count, cd_size, cd_offset


def _central_directory(fh: BinaryIO, offset: int, size: int, count: int) -> list[_Central]:
    data = _read(fh, offset, size)
    records, pos = [], 0
    while pos < len(data):
        if pos + _CENTRAL.size > len(data):
            raise ZipTruncatedError("a truncated central directory record")
        (sig, _, _, flags, method, _, _, crc, csize, usize, n, m, k, disk, _, _,
         header_at) = _CENTRAL.unpack_from(data, pos)
        if sig != b"PK\x01\x02":
            raise ZipLayoutError(f"a bad central directory record at byte {offset + pos:,}")
        end = pos + _CENTRAL.size + n + m + k
        if end > len(data):
            raise ZipLayoutError("a central directory record running past the directory")
        name = data[pos + _CENTRAL.size: pos + _CENTRAL.size + n]
        extra = data[pos + _CENTRAL.size + n: pos + _CENTRAL.size + n + m]
        usize, csize, header_at = _zip64_values(extra, [usize, csize, header_at],
                                                [0xFFFFFFFF] * 3)
        if disk not in (0, 0xFFFF):
            raise ZipLayoutError("a multi-disk archive")
        records.append(_Central(name, flags, method, crc, csize, usize, header_at))
        pos = end
    if len(records) != count:
        raise ZipLayoutError(f"the end record counts {count} entries, the central directory "
                             f"holds {len(records)}")
    return records


def _zip64_values(extra: bytes, values: list[int], placeholders: list[int]) -> list[int]:
    """``values`` with each one that equals its placeholder replaced from the zip64 extra
    field, in order (uncompressed size, compressed size, header offset)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == _ZIP64_TAG:
            field, read = extra[pos + 4: pos + 4 + length], 0
            out = []
            for value, placeholder in zip(values, placeholders, strict=True):
                if value == placeholder:
                    if read + 8 > len(field):
                        raise ZipLayoutError("a zip64 extra field too short for its sizes")
                    value = struct.unpack_from("<Q", field, read)[0]
                    read += 8
                out.append(value)
            return out
        pos += 4 + length
    return values


def _local(fh: BinaryIO, record: _Central) -> tuple[ZipEntry, int]:
    """The entry at ``record``'s offset, checked against it, and where the next one starts."""
    at = record.offset
    (sig, _, flags, method, _, _, crc, csize, usize, n, m) = _LOCAL.unpack(
        _read(fh, at, _LOCAL.size))
    shown = record.name.decode("utf-8", "replace")
    if sig != b"PK\x03\x04":
        raise ZipLayoutError(f"no local header where the central directory puts {shown!r}")
    name = _read(fh, at + _LOCAL.size, n)
    extra = _read(fh, at + _LOCAL.size + n, m)
    if name != record.name:
        raise ZipLayoutError(f"the local header at byte {at:,} names "
                             f"{name.decode('utf-8', 'replace')!r}, the central directory "
                             f"{shown!r}")
    if flags != record.flags or method != record.method:
        raise ZipLayoutError(f"{shown!r}: its local header and central record disagree on "
                             "flags or compression")
    zip64 = any(struct.unpack_from("<H", extra, i)[0] == _ZIP64_TAG
                for i in _extra_offsets(extra))
    data_at = at + _LOCAL.size + n + m
    end = data_at + record.compress_size
    if flags & _DESCRIPTOR_FLAG:
        if crc or (csize, usize) not in ((0, 0), (0xFFFFFFFF, 0xFFFFFFFF)):
            raise ZipLayoutError(f"{shown!r}: its local header holds a size or CRC although "
                                 "they follow in a data descriptor")
        end = _descriptor(fh, end, record, zip64 or record.compress_size >= 0xFFFFFFFF)
    else:
        usize, csize = _zip64_values(extra, [usize, csize], [0xFFFFFFFF] * 2)
        if (crc, csize, usize) != (record.crc, record.compress_size, record.file_size):
            raise ZipLayoutError(f"{shown!r}: its local header and central record disagree on "
                                 "its size or CRC")
    return ZipEntry(shown, at, data_at, record.compress_size, record.file_size), end


def _extra_offsets(extra: bytes) -> list[int]:
    offsets, pos = [], 0
    while pos + 4 <= len(extra):
        offsets.append(pos)
        pos += 4 + struct.unpack_from("<H", extra, pos + 2)[0]
    return offsets


def _descriptor(fh: BinaryIO, at: int, record: _Central, zip64: bool) -> int:
    """Where the data descriptor at ``at`` ends; it must repeat the central CRC and sizes."""
    sizes = "<IQQ" if zip64 else "<III"
    length = struct.calcsize(sizes)
    head = _read(fh, at, 4)
    if head == b"PK\x07\x08":
        at += 4
    values = struct.unpack(sizes, _read(fh, at, length))
    if values != (record.crc, record.compress_size, record.file_size):
        raise ZipLayoutError(f"{record.name.decode('utf-8', 'replace')!r}: its data descriptor "
                             "and central record disagree")
    return at + length
