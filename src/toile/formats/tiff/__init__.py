"""The TIFF layer shared by every format: light first-IFD reads, direct plane reads, OME-XML."""
