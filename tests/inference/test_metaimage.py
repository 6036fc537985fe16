"""The MetaImage reader: small files written here byte by byte, and the real label maps of ../shared/data."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import pytest

from sarcoscreen.inference.metaimage import (
    ELEMENT_TYPES,
    MetaImageError,
    read_metaimage,
    read_metaimage_header,
)


def _header(dims: tuple[int, ...], element_type: str, data_file: str, **extra: str) -> str:
    lines = ["ObjectType = Image", f"NDims = {len(dims)}", f"DimSize = {' '.join(map(str, dims))}",
             f"ElementType = {element_type}"]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    lines.append(f"ElementDataFile = {data_file}")
    return "\n".join(lines) + "\n"


def _write_mhd(folder: Path, array: np.ndarray, element_type: str, *, compress: bool = False,
               big_endian: bool = False, **extra: str) -> Path:
    """`array` in (z, y, x) order as name.mhd + name.raw/.zraw."""
    data = array.astype(array.dtype.newbyteorder(">" if big_endian else "<")).tobytes()
    if compress:
        data = zlib.compress(data)
        extra = {"CompressedData": "True", "CompressedDataSize": str(len(data)), **extra}
    if big_endian:
        extra = {"BinaryDataByteOrderMSB": "True", **extra}
    data_name = "image.zraw" if compress else "image.raw"
    (folder / data_name).write_bytes(data)
    header = folder / "image.mhd"
    header.write_text(_header(tuple(reversed(array.shape)), element_type, data_name, **extra))
    return header


def test_every_element_type_round_trips_in_zyx_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for element_type, dtype in ELEMENT_TYPES.items():
        if dtype.kind == "f":
            array = rng.normal(size=(3, 4, 5)).astype(dtype)
        else:
            info = np.iinfo(dtype)
            array = rng.integers(info.min, info.max, size=(3, 4, 5), dtype=dtype, endpoint=True)
        for compress in (False, True):
            for big_endian in (False, True):
                image = read_metaimage(_write_mhd(tmp_path, array, element_type, compress=compress,
                                                  big_endian=big_endian))
                assert image.array.dtype == dtype.newbyteorder("="), element_type
                assert image.array.dtype.isnative
                assert image.array.shape == (3, 4, 5)
                np.testing.assert_array_equal(image.array, array)
                assert image.array.flags.writeable


def test_x_is_the_fastest_axis_of_the_file(tmp_path: Path) -> None:
    # DimSize 3 2 2 (x, y, z): the bytes 0..11 are x fastest, so element (z=1, y=0, x=2) is byte 1*6 + 0*3 + 2.
    (tmp_path / "a.raw").write_bytes(bytes(range(12)))
    (tmp_path / "a.mhd").write_text(_header((3, 2, 2), "MET_UCHAR", "a.raw"))
    array = read_metaimage(tmp_path / "a.mhd").array
    assert array.shape == (2, 2, 3)
    assert array[1, 0, 2] == 8


def test_geometry_spacing_offset_and_transform_matrix(tmp_path: Path) -> None:
    # File axis x points to -y, y to +x, z to +z (a rotation of 90 degrees about z); rows of TransformMatrix
    # are the directions of the file axes.
    header_path = _write_mhd(tmp_path, np.zeros((4, 3, 2), np.int16), "MET_SHORT", ElementSpacing="0.5 0.7 3",
                             Offset="10 -20 30.5", TransformMatrix="0 -1 0 1 0 0 0 0 1",
                             AnatomicalOrientation="RAI")
    header = read_metaimage_header(header_path)
    assert header.dim_size == (2, 3, 4)
    assert header.shape == (4, 3, 2)
    assert header.spacing == (3.0, 0.7, 0.5)
    assert header.fields["AnatomicalOrientation"] == "RAI"
    # array index (z, y, x) = (2, 1, 1): offset + 1 * 0.5 * (0, -1, 0) + 1 * 0.7 * (1, 0, 0) + 2 * 3 * (0, 0, 1)
    point = header.affine @ np.array([2, 1, 1, 1.0])
    np.testing.assert_allclose(point[:3], [10 + 0.7, -20 - 0.5, 30.5 + 6.0])


def test_defaults_and_aliases(tmp_path: Path) -> None:
    header = read_metaimage_header(_write_mhd(tmp_path, np.zeros((2, 2, 2), np.uint8), "MET_UCHAR"))
    assert header.element_spacing == (1.0, 1.0, 1.0)
    assert header.offset == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(header.direction, np.eye(3))
    aliased = read_metaimage_header(_write_mhd(tmp_path, np.zeros((2, 2, 2), np.uint8), "MET_UCHAR",
                                               Position="1 2 3", Orientation="-1 0 0 0 -1 0 0 0 1",
                                               ElementSize="2 2 2"))
    assert aliased.offset == (1.0, 2.0, 3.0)
    assert aliased.element_spacing == (2.0, 2.0, 2.0)
    np.testing.assert_array_equal(aliased.direction, np.diag([-1.0, -1.0, 1.0]))


def test_two_dimensional_image_and_channels(tmp_path: Path) -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)  # rows, columns, channels
    (tmp_path / "rgb.raw").write_bytes(rgb.tobytes())
    (tmp_path / "rgb.mhd").write_text(_header((3, 2), "MET_UCHAR", "rgb.raw", ElementNumberOfChannels="3"))
    image = read_metaimage(tmp_path / "rgb.mhd")
    np.testing.assert_array_equal(image.array, rgb)
    assert image.affine.shape == (3, 3)


def test_local_data_in_one_mha_file(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    for compress in (False, True):
        data = array.astype("<u2").tobytes()
        extra = {}
        if compress:
            data = zlib.compress(data)
            extra = {"CompressedData": "True"}
        path = tmp_path / f"local-{compress}.mha"
        path.write_bytes(_header((4, 3, 2), "MET_USHORT", "LOCAL", **extra).encode() + data)
        np.testing.assert_array_equal(read_metaimage(path).array, array)


def test_gzip_stream_and_header_size(tmp_path: Path) -> None:
    array = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    (tmp_path / "g.zraw").write_bytes(gzip.compress(array.tobytes()))
    (tmp_path / "g.mhd").write_text(_header((2, 2, 2), "MET_FLOAT", "g.zraw", CompressedData="True"))
    np.testing.assert_array_equal(read_metaimage(tmp_path / "g.mhd").array, array)
    # HeaderSize: bytes to skip; -1: the data end the file.
    (tmp_path / "h.raw").write_bytes(b"\xff" * 7 + array.tobytes())
    for size in ("7", "-1"):
        (tmp_path / "h.mhd").write_text(_header((2, 2, 2), "MET_FLOAT", "h.raw", HeaderSize=size))
        np.testing.assert_array_equal(read_metaimage(tmp_path / "h.mhd").array, array)


@pytest.mark.parametrize(("header", "data", "message"), [
    ("NDims = 3\nElementType = MET_UCHAR\nElementDataFile = d.raw\n", b"", "no DimSize"),
    ("NDims = 3\nDimSize = 2 2\nElementType = MET_UCHAR\nElementDataFile = d.raw\n", b"", "2 value"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_BOGUS\nElementDataFile = d.raw\n", b"", "not supported"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = LIST 2D\n", b"", "several files"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = s%03d.raw 1 2 1\n", b"",
     "several files"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\n", b"", "without ElementDataFile"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = d.raw\n", b"\0" * 7, "truncated"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = d.raw\n", b"\0" * 9,
     "header is wrong"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = missing.raw\n", b"", "cannot read"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nCompressedData = True\nElementDataFile = d.raw\n",
     b"not zlib", "corrupt"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nCompressedData = True\nElementDataFile = d.raw\n",
     zlib.compress(b"\0" * 9), "more than"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nCompressedData = True\nElementDataFile = d.raw\n",
     zlib.compress(b"\0" * 8)[:-4], "truncated"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nCompressedData = True\nElementDataFile = d.raw\n",
     zlib.compress(b"\0" * 7), "end after 7"),
    ("NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nCompressedData = Maybe\nElementDataFile = d.raw\n",
     b"", "neither True nor False"),
    ("NDims = 3\nDimSize = 2 2 2\nElementSpacing = 1 0 1\nElementType = MET_UCHAR\nElementDataFile = d.raw\n",
     b"\0" * 8, "positive"),
    ("NDims = 3\nDimSize = 2 2 2\nTransformMatrix = 1 0 0 1 0 0 0 0 1\nElementType = MET_UCHAR\n"
     "ElementDataFile = d.raw\n", b"\0" * 8, "singular"),
    ("ObjectType = Tube\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = d.raw\n", b"",
     "only images"),
    ("this is not a header\n", b"", "not 'Key = Value'"),
])
def test_bad_files_raise_metaimage_error(tmp_path: Path, header: str, data: bytes, message: str) -> None:
    (tmp_path / "d.raw").write_bytes(data)
    (tmp_path / "bad.mhd").write_text(header)
    with pytest.raises(MetaImageError, match=message):
        read_metaimage(tmp_path / "bad.mhd")


def test_binary_file_is_not_a_header(tmp_path: Path) -> None:
    (tmp_path / "x.mha").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(MetaImageError):
        read_metaimage(tmp_path / "x.mha")
    with pytest.raises(MetaImageError, match="cannot read"):
        read_metaimage(tmp_path / "absent.mhd")


def test_real_pelvic_label_maps(shared_data: Path) -> None:
    """The annotation of ../shared/data: 512 x 512 x 137-163 voxels of 1 x 1 x 3 mm, values 0-28 (labels.json),
    stored as MET_SHORT although the data set's README says uint8; the body mask as MET_UCHAR 0/1."""
    folder = shared_data / "pelvic-annotation"
    cases = sorted(p for p in folder.glob("Pelvic-Ref-*") if (p / "label.mhd").is_file())
    if not cases:
        pytest.skip(f"no pelvic label maps under {folder}")
    for case in cases:
        label = read_metaimage(case / "label.mhd")
        assert label.header.element_type == "MET_SHORT"
        assert label.array.dtype == np.int16
        slices = label.array.shape[0]
        assert label.array.shape == (slices, 512, 512)
        assert 137 <= slices <= 163
        assert label.spacing == (3.0, 1.0, 1.0)
        np.testing.assert_array_equal(label.header.direction, np.eye(3))
        values = np.unique(label.array)
        assert values.min() == 0
        assert values.max() <= 28
        assert {1, 2, 5, 6, 7} <= set(values.tolist()), case.name  # pelvis, femur, the three glutei
        mask = read_metaimage(case / "mask.mhd")
        assert mask.array.dtype == np.uint8
        assert mask.array.shape == label.array.shape
        assert set(np.unique(mask.array).tolist()) <= {0, 1}
        np.testing.assert_allclose(mask.affine, label.affine)
        # Labelled voxels lie inside the body outline (all but a sliver at the skin).
        labelled = label.array > 0
        assert (mask.array[labelled] > 0).mean() > 0.99
    case_002 = folder / "Pelvic-Ref-002" / "label.mhd"
    if case_002.is_file():
        header = read_metaimage_header(case_002)
        assert header.compressed
        np.testing.assert_allclose(header.affine[:3, 3], [-256.0859375, -142.3859405517578, 60.59997558593751])
