"""The fast reader: pyarrow parses, whole columns are validated at once.

Every column is read as a string, so nothing is guessed. It can only *accept* a file:
at the first thing it is unsure about it gives up and returns ``None``, and
:func:`~experiments.accounts_csv.exact.read_exact` decides (and words the errors).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from experiments.accounts_csv.contract import (
    MAX_CENTS,
    MAX_TEXT_LENGTH,
    WHITESPACE,
    AccountTable,
    ArrowText,
    account_table,
    object_array,
    resolve_header,
)

_BOM = b"\xef\xbb\xbf"
_FAST_BLOCK_SIZE = 4 << 20
# The fast path's blocks are no larger than the csv field size limit (see read_fast);
# if someone lowered that limit this far, blocks would be too small to be fast.
_MIN_FAST_BLOCK_SIZE = 64 << 10

# The same formats for pyarrow's RE2 engine (blank values arrive there as nulls).
_MONEY_RE2 = r"^[0-9]+(\.[0-9]{1,2})?$"
_DAYS_RE2 = r"^[0-9]+(\.[0-9]+)?$"
_DATE_RE2 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# Bytes that can start or end a UTF-8 encoded WHITESPACE character.
_PADDING_FIRST_BYTE = np.zeros(256, dtype=bool)
_PADDING_FIRST_BYTE[[char.encode()[0] for char in WHITESPACE]] = True
_PADDING_LAST_BYTE = np.zeros(256, dtype=bool)
_PADDING_LAST_BYTE[[char.encode()[-1] for char in WHITESPACE]] = True


def read_fast(
    data: bytes, allowed: tuple[str, ...] | None, *, keep_ids: bool = True
) -> AccountTable | None:
    """Parse and validate column-wise with pyarrow; None means "let the exact reader decide".

    Returning a table is a promise that the exact reader would build an identical one.
    pyarrow and the csv module split fields the same way (non-strict quoting, doubled
    quotes, quoted newlines, blank lines), which the tests check against random input;
    every rule is checked again here, and any doubt falls through to the exact reader.
    """
    field_limit = csv.field_size_limit()
    found = _fast_header(data, field_limit)
    if found is None:
        return None
    header_end, header = found
    layout, header_errors = resolve_header(header, 1)
    if header_errors:
        return None

    names = [f"f{position}" for position in range(layout.width)]
    wanted = {names[position]: key for key, position in layout.index.items()}
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data)[header_end + 1 :],
            read_options=pa_csv.ReadOptions(
                column_names=names,
                # A row longer than a block is an error for pyarrow, so no field the
                # csv module would refuse as too large can get through here.
                block_size=min(_FAST_BLOCK_SIZE, field_limit),
                # Parse blocks in parallel; the columns are then checked two at a time.
                use_threads=True,
            ),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(wanted),
                column_types={name: pa.string() for name in wanted},
                null_values=[""],  # unquoted blanks arrive as nulls
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                check_utf8=False,  # the whole buffer was checked above
            ),
        )
    except pa.ArrowException:
        return None
    rows = table.num_rows
    if rows == 0:
        return None
    raw = {wanted[name]: table.column(name) for name in table.column_names}
    del table  # each column is released as soon as it has been converted
    # The allocator keeps freed blocks for reuse; hand them back so that the peak
    # memory is closer to what is live (about 190 MB less for a million rows).
    release_memory = pa.default_memory_pool().release_unused
    release_memory()

    checks = {
        "variant": lambda values: _fast_variants(values, allowed),
        "start_mrr": lambda values: _fast_cents(values, required=True),
        "expansion_mrr": _fast_cents,
        "contraction_mrr": _fast_cents,
        "churned_mrr": _fast_cents,
        "segment": _fast_segments,
        "days_to_value": _fast_days,
        "days_observed": _fast_days,
        "pre_start_mrr": _fast_optional_cents,
        "pre_end_mrr": _fast_optional_cents,
        "enrolled_on": _fast_dates,
    }
    # pyarrow kernels release the GIL, so two columns are checked at a time; the
    # account ids (whose uniqueness check needs a large hash table) go last.
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = {
            key: pool.submit(check, raw.pop(key)) for key, check in checks.items() if key in raw
        }
        pending["account_id"] = pool.submit(_fast_account_ids, raw.pop("account_id"))
        result = {key: future.result() for key, future in pending.items()}
    if any(value is None for value in result.values()):
        return None
    start_cents = result["start_mrr"]
    zeros = np.zeros(rows, dtype=np.int64)
    contraction = result.get("contraction_mrr", zeros)
    churned = result.get("churned_mrr", zeros)
    if not (start_cents > 0).all() or not (contraction + churned <= start_cents).all():
        return None
    days, observed = result.get("days_to_value"), result.get("days_observed")
    if days is not None and observed is not None and (days > observed).any():
        return None  # NaN compares False: a blank on either side is no violation
    # Now that the worker threads are gone their freed memory can be handed back.
    release_memory()
    ids = result.pop("account_id")
    # The ids stay in pyarrow's buffers (one array), not a million Python strings:
    # PostgreSQL's COPY sends those bytes as they are; others convert what they use.
    account_id = ArrowText(ids) if keep_ids else None
    return account_table(
        account_id=account_id,
        variant=result["variant"],
        start_cents=start_cents,
        expansion_cents=result.get("expansion_mrr", zeros.copy()),
        contraction_cents=contraction.copy() if contraction is zeros else contraction,
        churned_cents=churned.copy() if churned is zeros else churned,
        segment=result.get("segment"),
        days_to_value=days,
        notes=layout.notes,
        days_observed=observed,
        pre_start_cents=result.get("pre_start_mrr"),
        pre_end_cents=result.get("pre_end_mrr"),
        enrolled_on=result.get("enrolled_on"),
    )


def _is_utf8(data: bytes) -> bool:
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    as_text = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        as_text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _single_line_row(line: str) -> list[str] | None:
    """The header's fields if the first line is one complete CSV row by itself."""
    try:
        rows = list(csv.reader([line], strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _fast_text(values: pa.ChunkedArray, *, required: bool) -> pa.ChunkedArray | None:
    """Trimmed text within the length limit (None if a required value is blank)."""
    if required and values.null_count:
        return None
    if _maybe_padded(values):
        values = pc.utf8_trim(values, characters=WHITESPACE)
    lengths = pc.binary_length(values)
    # Bytes >= characters, so a byte count within the limit is enough; longer non-ASCII
    # values go to the exact reader, which counts characters.
    if (pc.max(lengths).as_py() or 0) > MAX_TEXT_LENGTH:
        return None
    if required and pc.min(lengths).as_py() == 0:
        return None
    if _holds_control_bytes(values):
        return None  # the exact reader names the line and column
    return values


def _holds_control_bytes(values: pa.ChunkedArray) -> bool:
    """Whether any value holds a C0 control character or DEL.

    A byte comparison over each chunk's text buffer (~15 ms for a million ids, an RE2
    match ~30 times slower): in UTF-8 the bytes 0x00-0x1F and 0x7F only ever encode
    those characters themselves.
    """
    for chunk in values.chunks:
        offsets_buffer, data_buffer = chunk.buffers()[1:3]
        if not len(chunk) or data_buffer is None:
            continue
        offsets = np.frombuffer(
            offsets_buffer, dtype=np.int32, count=len(chunk) + 1, offset=chunk.offset * 4
        )
        text = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
        if (text < 0x20).any() or (text == 0x7F).any():
            return True
    return False


def _maybe_padded(values: pa.ChunkedArray) -> bool:
    """Whether any value starts or ends with a byte that may belong to WHITESPACE.

    Looks only at the first and last byte of each value, which is much cheaper than
    trimming a copy of the column just to find that nothing changed.
    """
    for chunk in values.chunks:
        offsets_buffer, data_buffer = chunk.buffers()[1:3]
        if not len(chunk) or data_buffer is None:
            continue
        offsets = np.frombuffer(
            offsets_buffer, dtype=np.int32, count=len(chunk) + 1, offset=chunk.offset * 4
        )
        text = np.frombuffer(data_buffer, dtype=np.uint8)
        starts, ends = offsets[:-1], offsets[1:]
        filled = ends > starts
        if _PADDING_FIRST_BYTE[text[starts[filled]]].any():
            return True
        if _PADDING_LAST_BYTE[text[ends[filled] - 1]].any():
            return True
    return False


def _fast_account_ids(values: pa.ChunkedArray) -> pa.ChunkedArray | None:
    values = _fast_text(values, required=True)
    if values is None or len(pc.unique(values)) != len(values):
        return None
    return values


def _fast_variants(values: pa.ChunkedArray, allowed: tuple[str, ...] | None) -> np.ndarray | None:
    values = _fast_text(values, required=True)
    if values is None:
        return None
    if (
        allowed is not None
        and not pc.all(pc.is_in(values, value_set=_string_array(allowed))).as_py()
    ):
        return None
    return _objects_via_dictionary(values)


def _fast_segments(values: pa.ChunkedArray) -> np.ndarray | None:
    values = _fast_text(values, required=False)
    return None if values is None else _objects_via_dictionary(values)


def _fast_header(data: bytes, field_limit: int) -> tuple[int, list[str]] | None:
    """Where the header line ends and its fields, for the fast readers; None: not fast."""
    if field_limit < _MIN_FAST_BLOCK_SIZE:
        return None
    start = len(_BOM) if data.startswith(_BOM) else 0
    header_end = data.find(b"\n", start)
    if header_end < 0 or not _is_utf8(data):
        return None
    header = _single_line_row(data[start:header_end].decode("utf-8"))
    if header is None:
        return None
    return header_end, header


def _all_match(values: pa.ChunkedArray, pattern: str) -> bool:
    """Whether every non-null value matches; an all-null column matches trivially."""
    return pc.all(pc.match_substring_regex(values, pattern)).as_py() is not False


def _matching(values: pa.ChunkedArray, pattern: str) -> pa.ChunkedArray | None:
    """The values, trimmed only if needed, when every one matches; None otherwise."""
    # Values are rarely padded: only trim (a copy) when the untrimmed check fails.
    if not _all_match(values, pattern):
        values = pc.utf8_trim(values, characters=WHITESPACE)
        if not _all_match(values, pattern):
            return None
    return values


def _money_units(values: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """Money cells as float64 units (nulls kept) when all are valid and below the cap."""
    values = _matching(values, _MONEY_RE2)
    if values is None:
        return None
    try:
        units = pc.cast(values, pa.float64())
    except pa.ArrowInvalid:
        return None
    if (pc.max(units).as_py() or 0) >= MAX_CENTS / 100:
        return None
    return units


def _fast_cents(values: pa.ChunkedArray, *, required: bool = False) -> np.ndarray | None:
    if required and values.null_count:
        return None
    units = _money_units(values)
    if units is None:
        return None
    # Exact: a value with at most 2 decimals below 10^13 cents parses to within a
    # relative 2^-53 of itself, so units * 100 is within 0.003 of the integer cents.
    return _to_numpy(units, dtype=np.int64, blank=0, scale=100)


def _fast_days(values: pa.ChunkedArray) -> np.ndarray | None:
    values = _matching(values, _DAYS_RE2)
    if values is None:
        return None
    try:
        days = _to_numpy(pc.cast(values, pa.float64()), blank=math.nan)
    except pa.ArrowInvalid:
        return None
    return None if np.isinf(days).any() else days


def _fast_optional_cents(values: pa.ChunkedArray) -> np.ndarray | None:
    """Pre-period money: whole cents as float64, NaN for a blank (exact below 2**53)."""
    units = _money_units(values)
    if units is None:
        return None
    return _to_numpy(units, blank=math.nan, scale=100)


def _fast_dates(values: pa.ChunkedArray) -> np.ndarray | None:
    """ISO dates as ``datetime64[D]``, NaT for a blank; any doubt goes to the exact reader."""
    values = _matching(values, _DATE_RE2)
    if values is None:
        return None
    try:
        # date32 is whole days since 1970-01-01; the cast refuses impossible days (02-30)
        days = pc.cast(pc.cast(values, pa.date32()), pa.int32())
    except pa.ArrowInvalid:
        return None
    as_float = _to_numpy(days, blank=math.nan)  # exact: whole days fit easily
    out = np.full(as_float.size, np.datetime64("NaT"), dtype="datetime64[D]")
    known = ~np.isnan(as_float)
    out[known] = as_float[known].astype(np.int64).astype("datetime64[D]")
    return out


def _objects_via_dictionary(values: pa.ChunkedArray) -> np.ndarray:
    """A str object array (None for blank) in which repeated values share one object."""
    encoded = pc.dictionary_encode(values.combine_chunks(), null_encoding="encode")
    distinct = [value or None for value in encoded.dictionary.to_pylist()]
    indices = _to_numpy(encoded.indices, dtype=np.intp)
    return object_array(distinct)[indices]


def _string_array(items: Collection[str]) -> pa.Array:
    """A pyarrow string array built from buffers: pa.array() would import pandas (~0.15 s)."""
    encoded = [item.encode("utf-8") for item in items]
    offsets = np.cumsum([0] + [len(item) for item in encoded], dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def _to_numpy(
    values: pa.Array | pa.ChunkedArray,
    *,
    dtype: type[np.generic] = np.float64,
    blank: float = 0.0,
    scale: float | None = None,
) -> np.ndarray:
    """Copy a float64 or int32 column into a new numpy array of ``dtype``.

    Nulls become ``blank``; values are multiplied by ``scale`` and rounded if given.
    Chunk by chunk, so that no column-sized temporaries are left behind in the heap,
    and straight from the buffers because pyarrow's to_numpy() imports pandas (~0.15 s).
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    source_type = np.float64 if values.type == pa.float64() else np.int32
    itemsize = np.dtype(source_type).itemsize
    out = np.empty(len(values), dtype=dtype)
    position = 0
    for chunk in chunks:
        size = len(chunk)
        if not size:
            continue
        validity, numbers = chunk.buffers()[:2]
        part = np.frombuffer(numbers, dtype=source_type, count=size, offset=chunk.offset * itemsize)
        if chunk.null_count:
            bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
            part = np.where(bits[chunk.offset : chunk.offset + size].astype(bool), part, blank)
        if scale is not None:
            part = np.rint(part * scale)
        out[position : position + size] = part
        position += size
    return out
