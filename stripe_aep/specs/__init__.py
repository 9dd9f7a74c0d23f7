"""Specifications vendored into the package because code reads them at run time (see each SOURCE)."""
