"""s3pod: the daemon that consumes the s3po Redis queue and uploads to S3."""

from s3po_client import __version__

__all__ = ["__version__"]
