"""Which stage wrote a volume, and which input roles it may fill (``ngff.check_role``)."""

from __future__ import annotations

from pathlib import Path

from unet.errors import InputError

# role of an input -> (the stage that writes such volumes, the kinds it may have)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "raw": ("ingest", ("raw",)),
    "labels": ("ingest", ("binary", "instances")),
    "weights": ("weights", ()),
    "prediction": ("predict", ()),
    "segmentation": ("segment", ()),
}
_WRITERS = {
    "ingest": "unet ingest",
    "weights": "unet weights",
    "predict": "unet predict",
    "segment": "unet segment",
}


def check_role(path: str | Path, role: str, *, required: bool = False) -> None:
    """Raise :class:`InputError` if the volume ``path``, passed as the ``role`` input of a
    stage (a key of :data:`ROLES`), records that another stage (or kind) wrote it, e.g. labels
    passed as loss weights.  A volume without a record (written by another tool) passes unless
    ``required``."""
    from unet.io.ngff import attributes

    try:
        record = attributes(path)
    except Exception:  # a plain Zarr array or a foreign store: no record
        record = {}
    stage, kind = record.get("stage"), record.get("kind")
    want, kinds = ROLES[role]
    if stage is None:
        if required:
            raise InputError(
                f"{path}: no record of the stage that wrote it; the {role} input must be "
                f"written by `{_WRITERS[want]}`"
            )
        return
    if stage != want or (kinds and kind not in kinds):
        what = f"{kind} " if kind else ""
        raise InputError(
            f"{path}: is a {what}volume written by `{_WRITERS.get(stage, stage)}`, not a {role} "
            f"volume (expected one written by `{_WRITERS[want]}`"
            + (f" with kind {' or '.join(kinds)}" if kinds else "")
            + f"); check which file was passed as the {role} input"
        )
