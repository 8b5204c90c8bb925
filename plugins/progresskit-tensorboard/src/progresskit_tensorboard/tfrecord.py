"""TFRecord framing, the container of TensorBoard event files, with its CRC checks.

A record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32
masked_crc32c(data)``, little-endian (tensorflow/core/lib/io/record_writer.cc). Writers only
append whole records, but a reader may see the last one cut short (the writer is still
flushing it, or was killed mid-write): that record is *not yet complete*, never an error.
A CRC that does not match in bytes that are all present is corruption: the record is
skipped and reported, and reading goes on.
"""

from __future__ import annotations

import struct

import attrs
import google_crc32c

__all__ = ["FOOTER_BYTES", "HEADER_BYTES", "Corruption", "Split", "masked_crc32c", "split_records"]

HEADER_BYTES = 12
FOOTER_BYTES = 4
_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_ZEROS = bytes(HEADER_BYTES)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data`` (tensorflow/core/lib/hash/crc32c.h ``Mask``)."""
    crc: int = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@attrs.frozen
class Corruption:
    """Bytes that are not a valid record: where they start, how many, and why."""

    offset: int
    skipped: int
    reason: str


@attrs.frozen
class Split:
    """What :func:`split_records` found in a buffer."""

    #: ``(file offset, data)`` of each complete, checked record, in file order.
    records: list[tuple[int, bytes]]
    #: Bytes of the buffer used up: the complete records and the corrupt bytes skipped.
    consumed: int
    #: Bytes needed at the buffer's end before the next record can be told complete.
    needed: int
    problems: list[Corruption]


def _valid_header(buf: bytes, pos: int) -> bool:
    stored: int = _CRC.unpack_from(buf, pos + 8)[0]
    return masked_crc32c(buf[pos : pos + 8]) == stored


def _resync(buf: bytes, pos: int) -> int:
    """The first position after ``pos`` where a valid header starts, else where a header
    could still start once more bytes arrive."""
    last = len(buf) - HEADER_BYTES
    candidate = pos + 1
    while candidate <= last:
        if buf[candidate] == 0 and buf[candidate : candidate + HEADER_BYTES] == _ZEROS:
            # Twelve zero bytes are no header (the CRC of a zero length is not zero): the
            # zero-filled tail a crash leaves on some filesystems is skipped at C speed.
            nonzero = len(buf) - len(buf[candidate:].lstrip(b"\0"))
            candidate = max(candidate + 1, nonzero - HEADER_BYTES + 1)
            continue
        if _valid_header(buf, candidate):
            return candidate
        candidate += 1
    return max(pos + 1, last + 1)


def split_records(buf: bytes, base: int) -> Split:
    """Cut ``buf`` (the file's bytes from offset ``base`` on) into checked records.

    Stops at the first record not wholly in ``buf``; ``needed`` says how many bytes must
    be added to ``buf`` to complete it. A header whose CRC fails cannot be trusted for its
    length, so the bytes up to the next valid header are skipped; a data CRC that fails
    skips that one record.
    """
    records: list[tuple[int, bytes]] = []
    problems: list[Corruption] = []
    pos, size = 0, len(buf)
    crc, unpack_crc = masked_crc32c, _CRC.unpack_from
    while True:
        if size - pos < HEADER_BYTES:
            return Split(records, pos, HEADER_BYTES - (size - pos), problems)
        header = buf[pos : pos + 8]
        if crc(header) != unpack_crc(buf, pos + 8)[0]:
            start = pos
            pos = _resync(buf, pos)
            problems.append(
                Corruption(base + start, pos - start, "length CRC mismatch (corrupt header)")
            )
            continue
        length = _LENGTH.unpack(header)[0]
        end = pos + HEADER_BYTES + length + FOOTER_BYTES
        if end > size:
            return Split(records, pos, end - size, problems)
        data = buf[pos + HEADER_BYTES : end - FOOTER_BYTES]
        if crc(data) != unpack_crc(buf, end - FOOTER_BYTES)[0]:
            problems.append(Corruption(base + pos, end - pos, "data CRC mismatch (corrupt record)"))
        else:
            records.append((base + pos, data))
        pos = end
