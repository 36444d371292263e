"""Temporary TLS credentials for a Dask cluster whose workers run on other nodes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def worker_credentials(parent: str | Path) -> Iterator[Any]:
    """A ``distributed.Security`` with new temporary TLS credentials (a self-signed key and
    certificate, :meth:`~distributed.security.Security.temporary`) for scheduler, client and
    workers, the workers' copy as files that worker jobs on other nodes can read.

    The files (key, certificate, CA; mode 0600) lie in a new folder under ``parent`` (mode
    0700, so only this user reads them) that is removed on exit, also after an error.
    dask-jobqueue would dump them itself, but into the working directory and removed only
    when its cluster object is garbage-collected.
    """
    from distributed.security import Security

    made = Security.temporary()
    folder = Path(tempfile.mkdtemp(prefix=".unet-dask-tls-", dir=parent))
    try:
        files = {}
        for name, text in (
            ("ca_file", made.tls_ca_file),
            ("cert", made.tls_worker_cert),
            ("key", made.tls_worker_key),
        ):
            files[name] = folder / f"{name}.pem"
            fd = os.open(files[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        yield Security(
            require_encryption=True,
            tls_ca_file=str(files["ca_file"]),
            tls_worker_cert=str(files["cert"]),
            tls_worker_key=str(files["key"]),
            tls_scheduler_cert=made.tls_scheduler_cert,
            tls_scheduler_key=made.tls_scheduler_key,
            tls_client_cert=made.tls_client_cert,
            tls_client_key=made.tls_client_key,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
