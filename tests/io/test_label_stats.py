"""Class-balance checks of labels volumes (unet.io.label_stats) and the grey-value record
(unet.io.intensity): known answers on small counts and arrays."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from unet.errors import InputError
from unet.io import intensity, label_stats


def test_fraction_and_errors() -> None:
    assert label_stats.check_counts("a", 25, 75, "binary") == 0.75
    with pytest.raises(InputError, match="a: labels volume is empty"):
        label_stats.check_counts("a", 0, 0, "binary")
    with pytest.raises(InputError, match=r"a: labels hold no cell .*\.membrane_value"):
        label_stats.check_counts("a", 10, 0, "instances")
    with pytest.raises(InputError, match="every pixel of the binary mask is cell"):
        label_stats.check_counts("a", 0, 10, "binary")


def test_warnings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="unet.labels"):
        assert label_stats.check_counts("touching", 0, 10, "instances") == 1.0
        label_stats.check_counts("mito", 995, 5, "binary")
        label_stats.check_counts("fine", 30, 70, "binary")
    text = caplog.text
    assert "touching: no background pixels" in text
    assert "mito: the cell (foreground) class is rare (0.50 % of 1000 pixels)" in text
    assert "fine" not in text


def test_sample_stats_known_values() -> None:
    ramp = np.tile(np.arange(256, dtype=np.uint8), (3, 256, 1))  # every value once per row
    stats = intensity.sample_stats(ramp)
    assert stats["dtype"] == "uint8"
    assert stats["mean"] == pytest.approx(0.5, abs=1e-6)
    # 768 pixels of each grey value: the 1st percentile is grey value 2, the 99th 253
    assert stats["p1"] == pytest.approx(2 / 255, abs=1e-6)
    assert stats["p99"] == pytest.approx(253 / 255, abs=1e-6)
    # at most MAX_SLICES slices are read, strided over the ones given
    seen: list[int] = []

    class Spy:
        shape, dtype = (100, 4, 4), np.dtype(np.uint8)

        def __getitem__(self, index):  # type: ignore[no-untyped-def]
            seen.append(index[0])
            return np.zeros((4, 4), np.uint8)

    intensity.sample_stats(Spy(), range(10, 100))
    assert len(seen) <= intensity.MAX_SLICES and seen[0] == 10 and max(seen) < 100
    with pytest.raises(InputError, match="no slices"):
        intensity.sample_stats(ramp, [])


def test_check_dtype_family_and_shift(caplog: pytest.LogCaptureFixture) -> None:
    trained = {"dtype": "uint8", "p1": 0.1, "p99": 0.9, "mean": 0.5, "std": 0.2}
    same = dict(trained, dtype="uint16")  # same family: scaled alike
    intensity.check(trained, same, "v.zarr", explicit=False)
    intensity.check(None, dict(trained, dtype="int16"), "old model", explicit=False)
    with pytest.raises(InputError, match=r"v\.zarr: grey values of dtype int16 .* uint8"):
        intensity.check(trained, dict(trained, dtype="int16"), "v.zarr", explicit=False)
    intensity.check(trained, dict(trained, dtype="float32"), "v.zarr", explicit=True)
    with caplog.at_level(logging.WARNING, logger="unet.io.intensity"):
        intensity.check(trained, dict(trained, mean=0.8), "bright.zarr", explicit=False)
        intensity.check(trained, dict(trained, mean=0.6), "close.zarr", explicit=False)
    assert "bright.zarr: normalised grey values" in caplog.text and "by up to 0.30" in caplog.text
    assert "close.zarr" not in caplog.text
