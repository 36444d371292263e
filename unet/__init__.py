"""U-Net for electron microscopy (Ronneberger, Fischer, Brox, MICCAI 2015)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("unet-em")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
