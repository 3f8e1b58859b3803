"""Fixtures shared by several test modules."""

#: ``moto`` (an S3 API server per module) and ``s3`` (a fresh bucket on it).
pytest_plugins = ["s3_server"]
