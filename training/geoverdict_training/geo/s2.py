"""S2 cell ids of many points at once: the S2 library's maths (as s2sphere has it) on numpy arrays.

s2sphere computes one cell per Python call, about 40 µs a point; partitioning millions of photos
needs whole arrays. Every function here mirrors one step of `s2sphere.CellId.from_lat_lng`
(lat/lng -> unit vector -> cube face and (u, v) -> quadratic (s, t) -> leaf (i, j) -> Hilbert
position) or of the id arithmetic (`parent`, `level`, `range_min`, tokens), and the tests check
them against s2sphere. Cell ids are uint64 arrays.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from geoverdict_training.exceptions import DataFileError

MAX_LEVEL = 30
_POS_BITS = 2 * MAX_LEVEL + 1
_MAX_SIZE = 1 << MAX_LEVEL
_LOOKUP_BITS = 4
_SWAP_MASK = 0x01
_INVERT_MASK = 0x02
# Points per chunk in `leaf_cell_ids`: a dozen float64 temporaries of this size stay ~100 MB.
_CHUNK = 1 << 20

UInt64Array = npt.NDArray[np.uint64]
Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _lookup_pos_table() -> Int64Array:
    """S2's table: (4 bits each of i and j, orientation) -> (8 bits of position, orientation)."""
    pos_to_ij = ((0, 1, 3, 2), (0, 2, 3, 1), (3, 2, 0, 1), (3, 1, 0, 2))
    pos_to_orientation = (_SWAP_MASK, 0, 0, _INVERT_MASK | _SWAP_MASK)
    table = np.zeros(1 << (2 * _LOOKUP_BITS + 2), dtype=np.int64)
    for start in range(4):
        # Walk the Hilbert curve 4 levels down from each starting orientation.
        stack = [(0, 0, 0, 0, start)]  # (level, i, j, pos, orientation)
        while stack:
            level, i, j, pos, orientation = stack.pop()
            if level == _LOOKUP_BITS:
                table[(((i << _LOOKUP_BITS) + j) << 2) + start] = (pos << 2) + orientation
                continue
            r = pos_to_ij[orientation]
            for index in range(4):
                stack.append(
                    (
                        level + 1,
                        (i << 1) + (r[index] >> 1),
                        (j << 1) + (r[index] & 1),
                        (pos << 2) + index,
                        orientation ^ pos_to_orientation[index],
                    )
                )
    return table


_LOOKUP_POS = _lookup_pos_table()


def _lookup_ij_table() -> Int64Array:
    """The inverse of S2's table: (8 bits of position, orientation) -> (4 bits each of i and j,
    orientation)."""
    index = np.arange(_LOOKUP_POS.size)  # ((i << 4 | j) << 2) + starting orientation
    table = np.zeros_like(_LOOKUP_POS)
    table[((_LOOKUP_POS >> 2) << 2) + (index & 3)] = ((index >> 2) << 2) + (_LOOKUP_POS & 3)
    return table


_LOOKUP_IJ = _lookup_ij_table()


def _uv_to_ij(u: FloatArray) -> Int64Array:
    """S2's quadratic projection u -> s, then s -> leaf coordinate i in [0, 2^30)."""
    root = np.sqrt(1.0 + 3.0 * np.abs(u))  # equals sqrt(1 + 3u) or sqrt(1 - 3u), bit for bit
    s = np.where(u >= 0, 0.5 * root, 1.0 - 0.5 * root)
    return np.clip(np.floor(_MAX_SIZE * s), 0, _MAX_SIZE - 1).astype(np.int64)


def _face_ij_to_ids(face: Int64Array, i: Int64Array, j: Int64Array) -> UInt64Array:
    """Leaf cell ids from face and leaf coordinates: the Hilbert curve, 4 bits of i and j a step."""
    n = face.astype(np.uint64) << np.uint64(_POS_BITS - 1)
    bits = face & _SWAP_MASK
    mask = (1 << _LOOKUP_BITS) - 1
    for k in range(7, -1, -1):
        shift = k * _LOOKUP_BITS
        bits = bits + (((i >> shift) & mask) << (_LOOKUP_BITS + 2)) + (((j >> shift) & mask) << 2)
        bits = _LOOKUP_POS[bits]
        n |= (bits >> 2).astype(np.uint64) << np.uint64(2 * shift)
        bits = bits & (_SWAP_MASK | _INVERT_MASK)
    return n * np.uint64(2) + np.uint64(1)


def _leaf_ids_chunk(lat_deg: FloatArray, lon_deg: FloatArray) -> UInt64Array:
    lat = np.radians(lat_deg)
    lon = np.radians(lon_deg)
    cos_lat = np.cos(lat)
    x = np.cos(lon) * cos_lat
    y = np.sin(lon) * cos_lat
    z = np.sin(lat)
    ax, ay, az = np.abs(x), np.abs(y), np.abs(z)
    # The largest component picks the face; ties break as in s2sphere's largest_abs_component.
    axis = np.where(ax > ay, np.where(ax > az, 0, 2), np.where(ay > az, 1, 2))
    negative = np.choose(axis, (x, y, z)) < 0
    face = (axis + 3 * negative).astype(np.int64)
    # (u, v) per face, as in S2's ValidFaceXYZtoUV: face 0 (y/x, z/x), 1 (-x/y, z/y), ...
    u = np.choose(face, (y / x, -x / y, -x / z, z / x, z / y, -y / z))
    v = np.choose(face, (z / x, z / y, -y / z, y / x, -x / y, -x / z))
    return _face_ij_to_ids(face, _uv_to_ij(u), _uv_to_ij(v))


def leaf_cell_ids(lat_deg: npt.ArrayLike, lon_deg: npt.ArrayLike) -> UInt64Array:
    """Level-30 cell id of each point (degrees), as `s2sphere.CellId.from_lat_lng` gives it."""
    lat = np.asarray(lat_deg, dtype=np.float64).ravel()
    lon = np.asarray(lon_deg, dtype=np.float64).ravel()
    if lat.shape != lon.shape:
        raise ValueError(f"lat and lon differ in length: {lat.size} != {lon.size}")
    out = np.empty(lat.size, dtype=np.uint64)  # (N,)
    # Divisions by a zero component happen on the faces not chosen and are discarded.
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, lat.size, _CHUNK):
            stop = start + _CHUNK
            out[start:stop] = _leaf_ids_chunk(lat[start:stop], lon[start:stop])
    return out


def _ids_to_face_ij(ids: UInt64Array) -> tuple[Int64Array, Int64Array, Int64Array]:
    """Face and leaf coordinates (i, j) of each id: the Hilbert curve walked back, as
    s2sphere's `CellId.to_face_ij_orientation` (for a cell: a leaf near its centre)."""
    face = (ids >> np.uint64(_POS_BITS)).astype(np.int64)
    i = np.zeros(ids.shape, dtype=np.int64)
    j = np.zeros(ids.shape, dtype=np.int64)
    bits = face & _SWAP_MASK
    mask = (1 << _LOOKUP_BITS) - 1
    for k in range(7, -1, -1):
        n_bits = MAX_LEVEL - 7 * _LOOKUP_BITS if k == 7 else _LOOKUP_BITS  # 2 bits, then 4s
        shift = np.uint64(k * 2 * _LOOKUP_BITS + 1)
        position = ((ids >> shift) & np.uint64((1 << (2 * n_bits)) - 1)).astype(np.int64)
        bits = _LOOKUP_IJ[bits + (position << 2)]
        i += (bits >> (_LOOKUP_BITS + 2)) << (k * _LOOKUP_BITS)
        j += ((bits >> 2) & mask) << (k * _LOOKUP_BITS)
        bits = bits & (_SWAP_MASK | _INVERT_MASK)
    return face, i, j


def _st_to_uv(s: FloatArray) -> FloatArray:
    """S2's quadratic projection back: s in [0, 1] -> u in [-1, 1]."""
    return np.where(s >= 0.5, (4.0 * s * s - 1.0) / 3.0, (1.0 - 4.0 * (1.0 - s) * (1.0 - s)) / 3.0)


def vertices(ids: UInt64Array) -> tuple[FloatArray, FloatArray]:
    """Latitude and longitude (degrees), (C, 4) each, of every cell's four corners, in the
    order of s2sphere's `Cell.get_vertex(0..3)`."""
    face, i, j = _ids_to_face_ij(ids)
    size = np.int64(1) << (MAX_LEVEL - levels(ids))  # (C,) leaf cells along an edge
    i0, j0 = i & -size, j & -size  # the cell's lower-left leaf
    u = _st_to_uv(np.stack([i0, i0 + size], axis=1) / _MAX_SIZE)  # (C, 2): low, high
    v = _st_to_uv(np.stack([j0, j0 + size], axis=1) / _MAX_SIZE)
    corner = np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1])  # (u, v) index of vertex k
    cu, cv = u[:, corner[0]], v[:, corner[1]]  # (C, 4)
    one = np.ones_like(cu)
    f = face[:, None]
    # Face (u, v) -> unit cube point, S2's FaceUVtoXYZ: face 0 (1, u, v), 1 (-u, 1, v), ...
    x = np.choose(f, (one, -cu, -cu, -one, cv, cv))
    y = np.choose(f, (cu, one, -cv, -cv, -one, cu))
    z = np.choose(f, (cv, cv, one, -cu, -cu, -one))
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    lon = np.degrees(np.arctan2(y, x))
    return lat, lon


def lsb_for_level(level: int) -> np.uint64:
    """The lowest set bit of every cell id at `level`."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"S2 level must be in [0, {MAX_LEVEL}], got {level}")
    return np.uint64(1) << np.uint64(2 * (MAX_LEVEL - level))


def parent_ids(ids: UInt64Array, level: int) -> UInt64Array:
    """The ancestor at `level` of each cell (cells must be at `level` or finer)."""
    lsb = lsb_for_level(level)
    return (ids & ~(lsb - np.uint64(1))) | lsb


def _lsb(ids: UInt64Array) -> UInt64Array:
    return ids & (~ids + np.uint64(1))


def levels(ids: UInt64Array) -> Int64Array:
    """The level (0 = face, 30 = leaf) of each cell id."""
    trailing_zeros = np.log2(_lsb(ids).astype(np.float64)).astype(np.int64)  # exact: powers of 2
    return MAX_LEVEL - trailing_zeros // 2


def range_min(ids: UInt64Array) -> UInt64Array:
    """The first leaf cell id inside each cell."""
    return ids - (_lsb(ids) - np.uint64(1))


def range_max(ids: UInt64Array) -> UInt64Array:
    """The last leaf cell id inside each cell."""
    return ids + (_lsb(ids) - np.uint64(1))


def is_valid(ids: UInt64Array) -> npt.NDArray[np.bool_]:
    """Whether each id names a cell: a face below 6 and its lowest set bit at an even position."""
    return ((ids >> np.uint64(_POS_BITS)) < 6) & ((_lsb(ids) & np.uint64(0x1555555555555555)) != 0)


def to_tokens(ids: UInt64Array) -> list[str]:
    """S2 tokens (hex id without trailing zeros), as `s2sphere.CellId.to_token` writes them."""
    return [format(int(cell), "016x").rstrip("0") for cell in ids]


def from_tokens(tokens: list[str]) -> UInt64Array:
    """Cell ids of S2 tokens; raises DataFileError on a token that names no cell."""
    ids = np.empty(len(tokens), dtype=np.uint64)
    for k, token in enumerate(tokens):
        text = token.strip().lower()
        if not 0 < len(text) <= 16:
            raise DataFileError(f"not an S2 token: {token!r}")
        try:
            ids[k] = int(text.ljust(16, "0"), 16)
        except ValueError as exc:
            raise DataFileError(f"not an S2 token: {token!r}") from exc
    bad = np.flatnonzero(~is_valid(ids))
    if bad.size:
        raise DataFileError(f"not a valid S2 cell: {tokens[int(bad[0])]!r}")
    return ids
