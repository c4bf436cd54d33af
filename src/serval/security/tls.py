"""TLS files (``--tls-cert``, ``--tls-key``, ``--tls-client-ca``), shared by REST and gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate chain and key, and, for mutual TLS, the CA bundle
    whose certificates clients must present."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """(certificate chain, key, client CA or None), as gRPC wants them."""
        try:
            return (
                self.cert.read_bytes(),
                self.key.read_bytes(),
                self.client_ca.read_bytes() if self.client_ca is not None else None,
            )
        except OSError as exc:
            raise OSError(f"cannot read a TLS file: {exc}") from exc
