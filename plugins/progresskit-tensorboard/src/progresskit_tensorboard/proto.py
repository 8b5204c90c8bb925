"""The few protobuf fields of an ``Event`` that progress needs, decoded without protobuf.

Field numbers are those of tensorboard/compat/proto/{event,summary,tensor,types}.proto:
``Event`` 1 wall_time (double), 2 step (int64), 5 summary; ``Summary`` 1 value (repeated);
``Summary.Value`` 1 tag, 9 metadata, 2 simple_value (float), 8 tensor, 3-6 the other kinds
(histogram, image, audio); ``SummaryMetadata`` 1 plugin_data (1 plugin_name), 4 data_class;
``TensorProto`` 1 dtype, 2 tensor_shape (2 dim, 1 size), 4 tensor_content, 5 float_val,
6 double_val, 7 int_val, 10 int64_val, 13 half_val. Every other field is skipped by its
wire type, so events written by newer writers still decode.
"""

from __future__ import annotations

import struct

import attrs

__all__ = ["DecodeError", "Event", "Value", "decode_event"]

_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
_HALF = struct.Struct("<e")

#: ``DataType`` numbers of the numeric dtypes a scalar may be written in.
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64, DT_BFLOAT16, DT_HALF = 1, 2, 3, 9, 14, 19
#: ``SummaryMetadata.DataClass.DATA_CLASS_SCALAR``.
DATA_CLASS_SCALAR = 1
#: ``Summary.Value`` field numbers of its ``value`` oneof, by the kind they hold.
_KINDS = {2: "scalar", 3: "histogram", 4: "image", 5: "histogram", 6: "audio", 8: "tensor"}


class DecodeError(ValueError):
    """Bytes that are not the protobuf message they should be; the message says where."""


@attrs.frozen
class Value:
    """One ``Summary.Value``: its tag, what kind of data it holds, and the number when it
    is a scalar (``simple_value``, or a one-element numeric tensor)."""

    tag: str
    kind: str
    number: float | None = None
    #: ``metadata.plugin_data.plugin_name``; writers set it on a tag's first value only.
    plugin: str | None = None
    scalar_class: bool = False


@attrs.frozen
class Event:
    wall_time: float
    step: int
    values: tuple[Value, ...] = ()


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError(f"varint longer than 10 bytes at byte {pos}")


def _fields(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """``(field number, wire type, a, b)`` of each field in ``buf[pos:end]``: for a
    varint ``a`` is its value, otherwise ``buf[a:b]`` holds the field's bytes."""
    out = []
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, 0, value, 0))
            continue
        if wire == 1:
            stop = pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            stop = pos + length
        elif wire == 5:
            stop = pos + 4
        else:
            raise DecodeError(f"field {number}: unsupported wire type {wire} at byte {pos}")
        if stop > end:
            raise DecodeError(f"field {number} runs past the end of its message (byte {end})")
        out.append((number, wire, pos, stop))
        pos = stop
    if pos != end:
        raise DecodeError(f"message overruns its length (byte {pos} > {end})")
    return out


def _text(buf: bytes, a: int, b: int) -> str:
    return buf[a:b].decode("utf-8", errors="replace")


def _packed_numbers(buf: bytes, wire: int, a: int, b: int, kind: str) -> list[float]:
    """The numbers of a repeated numeric field, packed (wire 2) or one per field."""
    if kind == "float":
        step, fixed, unpack = 4, 5, _FLOAT.unpack_from
    elif kind == "double":
        step, fixed, unpack = 8, 1, _DOUBLE.unpack_from
    else:
        if wire == 0:
            return [float(_signed(a))]
        if wire != 2:
            return []
        numbers, pos = [], a
        while pos < b:
            value, pos = _varint(buf, pos)
            numbers.append(float(_signed(value)))
        return numbers
    if wire == fixed:
        return [unpack(buf, a)[0]]
    if wire != 2:
        return []  # not this field's encoding: nothing to read as a number
    return [unpack(buf, p)[0] for p in range(a, b - step + 1, step)]


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _half(bits: int, dtype: int) -> float:
    if dtype == DT_BFLOAT16:
        return float(_FLOAT.unpack((bits << 16 & 0xFFFFFFFF).to_bytes(4, "little"))[0])
    return float(_HALF.unpack((bits & 0xFFFF).to_bytes(2, "little"))[0])


_CONTENT = {
    DT_FLOAT: struct.Struct("<f"),
    DT_DOUBLE: struct.Struct("<d"),
    DT_INT32: struct.Struct("<i"),
    DT_INT64: struct.Struct("<q"),
    DT_HALF: struct.Struct("<e"),
}


def _tensor_number(buf: bytes, pos: int, end: int) -> float | None:
    """The value of a one-element numeric tensor, else ``None`` (text, vectors, ...)."""
    dtype, elements = 0, 1
    content: tuple[int, int] | None = None
    numbers: list[float] = []
    for number, wire, a, b in _fields(buf, pos, end):
        if number == 1 and wire == 0:
            dtype = a
        elif number == 2 and wire == 2:
            for dim, dim_wire, da, db in _fields(buf, a, b):
                if dim == 2 and dim_wire == 2:
                    for field, field_wire, size, _ in _fields(buf, da, db):
                        if field == 1 and field_wire == 0:
                            elements *= _signed(size)
        elif number == 4 and wire == 2:
            content = (a, b)
        elif number == 5:
            numbers += _packed_numbers(buf, wire, a, b, "float")
        elif number == 6:
            numbers += _packed_numbers(buf, wire, a, b, "double")
        elif number in (7, 10):
            numbers += _packed_numbers(buf, wire, a, b, "int")
        elif number == 13:
            numbers += [_half(int(n), dtype) for n in _packed_numbers(buf, wire, a, b, "int")]
    if elements != 1 or dtype not in (*_CONTENT, DT_BFLOAT16):
        return None
    if content is not None:
        a, b = content
        if dtype == DT_BFLOAT16:
            return _half(int.from_bytes(buf[a:b], "little"), dtype) if b - a == 2 else None
        layout = _CONTENT[dtype]
        return float(layout.unpack_from(buf, a)[0]) if b - a == layout.size else None
    # Serializers write fields in number order, so dtype (1) was known for half_val (13).
    return numbers[0] if len(numbers) == 1 else None


def _value(buf: bytes, pos: int, end: int) -> Value:
    tag, kind = "", "other"
    number: float | None = None
    plugin: str | None = None
    scalar_class = False
    for field, wire, a, b in _fields(buf, pos, end):
        if field == 1 and wire == 2:
            tag = _text(buf, a, b)
        elif field == 9 and wire == 2:
            for meta, meta_wire, ma, mb in _fields(buf, a, b):
                if meta == 1 and meta_wire == 2:
                    for pd, pd_wire, pa, pb in _fields(buf, ma, mb):
                        if pd == 1 and pd_wire == 2:
                            plugin = _text(buf, pa, pb)
                elif meta == 4 and meta_wire == 0:
                    scalar_class = ma == DATA_CLASS_SCALAR
        elif field in _KINDS:
            kind = _KINDS[field]
            if field == 2 and wire == 5:
                number = float(_FLOAT.unpack_from(buf, a)[0])
            elif field == 8 and wire == 2:
                number = _tensor_number(buf, a, b)
    return Value(tag, kind, number, plugin, scalar_class)


def decode_event(buf: bytes) -> Event:
    """Decode one serialized ``Event``. :raises DecodeError: when it is not one."""
    try:
        wall_time, step = 0.0, 0
        values: list[Value] = []
        for field, wire, a, b in _fields(buf, 0, len(buf)):
            if field == 1 and wire == 1:
                wall_time = _DOUBLE.unpack_from(buf, a)[0]
            elif field == 2 and wire == 0:
                step = _signed(a)
            elif field == 5 and wire == 2:
                for number, value_wire, va, vb in _fields(buf, a, b):
                    if number == 1 and value_wire == 2:
                        values.append(_value(buf, va, vb))
        return Event(wall_time, step, tuple(values))
    except IndexError:
        raise DecodeError("message ends inside a field") from None
    except struct.error as exc:
        raise DecodeError(f"bad fixed-width field: {exc}") from None
